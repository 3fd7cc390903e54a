-- The device authorization grant (RFC 8628, package sso): one row per
-- device authorization request, from the device's first call until its
-- tokens are issued, the person denies it or it expires.
--
-- Both codes are stored only as their SHA-256: a database reader can
-- neither poll for the tokens nor approve a request. The row is approved by
-- one SSO session (sid), and the tokens issued from it belong to that
-- session like a code's do: they die with it, and the client session made
-- at approval has the app told at logout.
CREATE TABLE oauth_device_codes (
    device_code_hash bytea PRIMARY KEY,
    user_code_hash   bytea NOT NULL UNIQUE,
    client_id        text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes           text[] NOT NULL DEFAULT '{}',
    audience         text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    -- Seconds the device must wait between polls; slow_down adds 5.
    poll_interval    integer NOT NULL,
    last_polled_at   timestamptz,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    decided_at       timestamptz,
    -- Set on approval: who approved, in which session, what was granted,
    -- and the fosite session the tokens are issued with (ID token claims).
    sid              uuid REFERENCES sso_sessions (id) ON DELETE CASCADE,
    subject          text NOT NULL DEFAULT '',
    granted_scopes   text[] NOT NULL DEFAULT '{}',
    session          jsonb
);
CREATE INDEX oauth_device_codes_expiry_idx ON oauth_device_codes (expires_at);

-- DPoP (RFC 9449, package sso/dpop): the proofs seen, one row per key and
-- jti (their SHA-256), kept as long as a proof could be accepted, so a
-- replay is refused by every instance.
CREATE TABLE dpop_proofs (
    key_hash   bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX dpop_proofs_expiry_idx ON dpop_proofs (expires_at);

-- A client registered with dpop_bound_access_tokens (RFC 9449 §5.2) gets
-- tokens only with a DPoP proof.
ALTER TABLE oauth_clients ADD COLUMN dpop_bound_access_tokens boolean NOT NULL DEFAULT false;
