-- Passkeys (WebAuthn credentials, package passkey): discoverable
-- credentials made with user verification, one row per credential, and the
-- challenges of ceremonies in progress.
CREATE TABLE passkey_credentials (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The credential id the authenticator chose: public, unique across
    -- every account (an authenticator never reuses one).
    credential_id   bytea NOT NULL UNIQUE,
    -- COSE_Key, as the authenticator sent it.
    public_key      bytea NOT NULL,
    -- Highest signature counter seen; 0 for authenticators that keep none.
    sign_count      bigint NOT NULL DEFAULT 0,
    transports      text[] NOT NULL DEFAULT '{}',
    aaguid          uuid NOT NULL,
    backup_eligible boolean NOT NULL,
    backup_state    boolean NOT NULL,
    attachment      text NOT NULL DEFAULT '',
    name            text NOT NULL,
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz
);
CREATE INDEX passkey_credentials_user_idx ON passkey_credentials (user_id);

-- One row per ceremony begun and not yet finished: keyed by the SHA-256 of
-- the challenge, bound to what asked for it (a sign-in in progress, or an
-- account session), deleted when the response comes back, whether it
-- passes or not, so every challenge is answered at most once.
CREATE TABLE passkey_challenges (
    challenge_hash bytea PRIMARY KEY,
    purpose        text NOT NULL,
    binding        bytea NOT NULL,
    user_id        uuid REFERENCES users (id) ON DELETE CASCADE,
    -- go-webauthn's SessionData without the challenge itself.
    ceremony       jsonb NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX passkey_challenges_expiry_idx ON passkey_challenges (expires_at);

-- A sign-in in progress may be a step-up that asks for more than two
-- factors: the authentication class it must reach (acr_values asking for
-- urn:idp:acr:phr: a passkey). '' is "two factors" (the step-up before).
ALTER TABLE login_flows ADD COLUMN want_acr text NOT NULL DEFAULT '';
