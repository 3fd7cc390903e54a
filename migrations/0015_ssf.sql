-- Shared Signals streams (internal/ssf): one per receiver, an OAuth client
-- of this provider holding the ssf scope. The stream goes when its client
-- does. A push stream's authorization header is the receiver's credential
-- for its own endpoint: sealed by the server secret, never shown again.
CREATE TABLE ssf_streams (
    id                             text PRIMARY KEY,
    client_id                      text NOT NULL UNIQUE REFERENCES oauth_clients (id) ON DELETE CASCADE,
    delivery_method                text NOT NULL CHECK (delivery_method IN ('urn:ietf:rfc:8935', 'urn:ietf:rfc:8936')),
    endpoint_url                   text NOT NULL DEFAULT '',
    authorization_header_encrypted bytea,
    events_requested               text[] NOT NULL DEFAULT '{}',
    description                    text NOT NULL DEFAULT '',
    status                         text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'paused', 'disabled')),
    status_reason                  text NOT NULL DEFAULT '',
    -- Which users a stream is about unless ssf_stream_subjects says
    -- otherwise: 'ALL' (SSF's default_subjects) or 'NONE'.
    default_subjects               text NOT NULL DEFAULT 'ALL' CHECK (default_subjects IN ('ALL', 'NONE')),
    created_at                     timestamptz NOT NULL,
    updated_at                     timestamptz NOT NULL
);

-- Subjects a receiver added to (included) or removed from (not included)
-- its stream. subject_key is the normalised identifier matched when an
-- event is queued ('email:' || lower(email), 'iss_sub:' || iss || ' ' ||
-- sub); subject is what the receiver sent, which events about the person
-- then carry as their sub_id. Matching happens when an event is queued, so
-- a subject may name nobody yet, and the answer never says whether it does.
CREATE TABLE ssf_stream_subjects (
    stream_id   text NOT NULL REFERENCES ssf_streams (id) ON DELETE CASCADE,
    subject_key text NOT NULL,
    subject     jsonb NOT NULL,
    included    boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (stream_id, subject_key)
);
CREATE INDEX ssf_stream_subjects_key ON ssf_stream_subjects (subject_key);
