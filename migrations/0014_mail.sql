-- Self-service password reset (package reset): one row per link mailed,
-- keyed by the SHA-256 of the link's token (the token itself is only in
-- the mail, and sealed in the outbox until it is sent). A link works once
-- (used_at), until expires_at, and only while the account's password is
-- the one it was mailed for (password_fingerprint, mail.PasswordFingerprint).
CREATE TABLE password_resets (
    token_hash           bytea PRIMARY KEY,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_fingerprint bytea NOT NULL,
    created_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    used_at              timestamptz
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
CREATE INDEX password_resets_expiry_idx ON password_resets (expires_at);

-- A sign-in begun from a reset link: its new-password step replaces a
-- forgotten password rather than a temporary one.
ALTER TABLE login_flows ADD COLUMN reset boolean NOT NULL DEFAULT false;
