-- Transmitters this provider trusts as a Shared Signals receiver
-- (internal/ssf/receiver). A poll transmitter's bearer token, or the
-- client secret with which we get one (client_id, token_url), is sealed by
-- the server secret; a push transmitter's Authorization header is one we
-- generated, kept only as its SHA-256. pending_acks are the jtis of the
-- last poll's SETs, processed and committed, acknowledged by the next poll
-- (pending_errs: those refused, reported by it as setErrs).
CREATE TABLE ssf_transmitters (
    id                   text PRIMARY KEY,
    issuer               text NOT NULL UNIQUE,
    config_url           text NOT NULL,
    audience             text NOT NULL DEFAULT '',
    events               text[] NOT NULL,
    subjects             text[] NOT NULL,
    delivery             text NOT NULL CHECK (delivery IN ('push', 'poll')),
    poll_url             text NOT NULL DEFAULT '',
    poll_token_encrypted bytea,
    client_id            text NOT NULL DEFAULT '',
    token_url            text NOT NULL DEFAULT '',
    token_scope          text NOT NULL DEFAULT '',
    push_auth_hash       bytea,
    pending_acks         text[] NOT NULL DEFAULT '{}',
    pending_errs         jsonb NOT NULL DEFAULT '{}',
    last_poll_at         timestamptz,
    last_error           text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL
);

-- Every SET received, by its transmitter's jti: a jti is acted on once,
-- whichever instance received it; rows older than the iat window go.
CREATE TABLE ssf_received (
    transmitter_id text NOT NULL REFERENCES ssf_transmitters (id) ON DELETE CASCADE,
    jti            text NOT NULL,
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (transmitter_id, jti)
);
CREATE INDEX ssf_received_at ON ssf_received (received_at);
