-- Verified addresses (package verify). email_verified_at is when the
-- account's current address was last proven to reach its owner; NULL for
-- an address nobody has proven, which is every account made before this
-- migration: ID tokens and userinfo then leave email_verified out rather
-- than claim what was never checked (and rather than say false, which
-- oauth2-proxy refuses by default).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- One row per verification link mailed, keyed by the SHA-256 of its token.
-- email is the address the link was sent to and proves; old_email is set
-- for a change of address (the account's address when the change was
-- asked for, which must still be the account's when it is confirmed).
CREATE TABLE email_verifications (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text NOT NULL,
    old_email  text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_verifications_user_idx ON email_verifications (user_id);
CREATE INDEX email_verifications_expiry_idx ON email_verifications (expires_at);

-- Self-registration (IDP_SELF_SIGNUP): a sign-up waits here until the link
-- mailed to its address is confirmed; only then is the account made, its
-- address verified. The password is kept as the argon2id hash it will
-- have in password_credentials.
CREATE TABLE signups (
    token_hash    bytea PRIMARY KEY,
    email         text NOT NULL,
    name          text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX signups_expiry_idx ON signups (expires_at);
