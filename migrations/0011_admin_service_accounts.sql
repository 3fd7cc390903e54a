-- An admin service account: a confidential client_credentials client whose
-- tokens with the admin scope the admin API accepts (internal/admin). The
-- API reads the mark on every request, so removing it stops the client at
-- once; only such a client is granted the admin scope by the token
-- endpoint.
ALTER TABLE oauth_clients ADD COLUMN admin_service_account boolean NOT NULL DEFAULT false;

-- When the session's owner last gave a second factor in it: at a
-- two-factor sign-in or step-up, or to confirm a destructive action in the
-- console, which asks again when it is older than a few minutes
-- (internal/sessions, internal/console). NULL for a password-only session.
-- Two-factor sessions from before gave theirs at their auth_time.
ALTER TABLE sso_sessions ADD COLUMN second_factor_at timestamptz;
UPDATE sso_sessions SET second_factor_at = auth_time
WHERE acr = 'urn:idp:acr:mfa' AND revoked_at IS NULL;
