-- A guess at a password or second factor is counted before it is judged
-- (internal/throttle, Limiter.QueueReserve): N concurrent guesses see N
-- attempts, and only those the policy allows are hashed. One statement
-- decides under the keys' row locks, taken in key order so two
-- reservations never deadlock. checked keys are only looked at (the
-- per-address key, where successes in flight must not count). Returns NULL
-- when the attempt is reserved, else the time the keys are blocked until
-- (nothing is counted then). delays are the policy's delay per failure
-- count, in microseconds (Limiter.delays).
CREATE FUNCTION idp_throttle_reserve(keys text[], checked text[], now timestamptz,
    window_start timestamptz, delays bigint[]) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    blocked timestamptz;
BEGIN
    INSERT INTO throttle (key, failures, last_failure_at, blocked_until)
        SELECT k, 0, now, '-infinity' FROM unnest(keys) AS k ORDER BY k
        ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM throttle WHERE key = ANY (keys) ORDER BY key FOR UPDATE;
    -- A new statement, so a new snapshot: it sees what the reservation that
    -- held the locks before this one committed.
    SELECT max(blocked_until) INTO blocked FROM throttle WHERE key = ANY (keys || checked);
    IF blocked > now THEN
        RETURN blocked;
    END IF;
    UPDATE throttle SET
        failures = CASE WHEN last_failure_at < window_start THEN 1 ELSE failures + 1 END,
        last_failure_at = now
    WHERE key = ANY (keys);
    UPDATE throttle SET blocked_until = greatest(blocked_until,
        now + delays[least(failures, cardinality(delays))] * interval '1 microsecond')
    WHERE key = ANY (keys);
    RETURN NULL;
END
$$;

-- "Keep me signed in on this device": chosen in the sign-in form, carried
-- by the flow, and kept on the session, whose cookie is a browser-session
-- cookie otherwise (internal/sessions).
ALTER TABLE login_flows ADD COLUMN remember boolean NOT NULL DEFAULT false;
ALTER TABLE sso_sessions ADD COLUMN remember boolean NOT NULL DEFAULT false;

-- A pending (unconfirmed) TOTP secret belongs to the sign-in or the session
-- that asked for it, by the SHA-256 of its id: no other one is shown it or
-- may confirm it (internal/mfa). NULL for rows from before.
ALTER TABLE totp_credentials ADD COLUMN enrollment_owner bytea;

-- One layout for a code's PKCE and OpenID Connect sessions: forms in the
-- code's row (0009). Sessions an older release stored as rows of their own
-- move into their code's row, once, and those tables go. A session's row
-- holds the code's request with another form; the form is all that moves.
UPDATE oauth_authorize_codes c SET pkce_form = p.request -> 'form'
FROM oauth_pkce p WHERE p.signature_hash = c.signature_hash AND c.pkce_form IS NULL;
UPDATE oauth_authorize_codes c SET oidc_form = o.request -> 'form'
FROM oauth_oidc o WHERE o.request_id = c.request_id AND c.oidc_form IS NULL;
DROP TABLE oauth_pkce;
DROP TABLE oauth_oidc;

-- An access token of an offline_access grant outlives its SSO session, as
-- its refresh token does; any other is dead once the session has timed
-- out, before the janitor ends the session (internal/sso/store).
ALTER TABLE oauth_access_tokens ADD COLUMN offline boolean NOT NULL DEFAULT false;
