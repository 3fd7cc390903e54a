-- The audit log is read per user (admin console, API and CLI): what was
-- done to an account (its target) and what the account did (its actor),
-- newest first.
CREATE INDEX audit_log_target_idx ON audit_log (target, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id DESC);
