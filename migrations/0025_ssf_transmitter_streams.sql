-- The stream this provider created at a transmitter as its receiver
-- (internal/ssf/receiver): its id there, the verification request in
-- flight (the SHA-256 of the state we sent), when a verification event
-- last echoed it, and the stream's status as the transmitter's last
-- stream-updated event said. poll_token_encrypted now holds the
-- credential for the transmitter's API whatever the delivery: a push
-- stream we created is managed with it too.
ALTER TABLE ssf_transmitters
    ADD COLUMN stream_id           text NOT NULL DEFAULT '',
    ADD COLUMN verify_state_hash   bytea,
    ADD COLUMN verify_requested_at timestamptz,
    ADD COLUMN verified_at         timestamptz,
    ADD COLUMN stream_status       text NOT NULL DEFAULT '',
    ADD COLUMN stream_reason       text NOT NULL DEFAULT '',
    ADD COLUMN stream_updated_at   timestamptz;
