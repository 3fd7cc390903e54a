-- Admins list a user's recently ended sessions with their notifications.
CREATE INDEX sso_sessions_user_revoked_idx ON sso_sessions (user_id, revoked_at) WHERE revoked_at IS NOT NULL;
