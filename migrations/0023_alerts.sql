-- "Was this you?" alerts (package alerts).
--
-- The devices each account has signed in from: one row per device cookie
-- (a random value the browser keeps for a year; only its SHA-256 is
-- here), so a sign-in from a device the account has not used can be told
-- to its owner. Nothing about the device but the cookie is kept.
CREATE TABLE known_devices (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_hash bytea NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);
CREATE INDEX known_devices_last_seen_idx ON known_devices (last_seen);

-- The "This wasn't me" links alerts carry: keyed by the SHA-256 of the
-- token (the token is only in the mail, and sealed in the outbox until
-- it is sent), single use (used_at), until expires_at. sid names the one
-- session a new-device link ends; NULL ends every session of the account.
CREATE TABLE alert_links (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event      text NOT NULL,
    sid        uuid,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX alert_links_user_idx ON alert_links (user_id);
CREATE INDEX alert_links_expiry_idx ON alert_links (expires_at);
