-- idp_assert lets a statement in a pipelined batch fail on purpose: the
-- token endpoint sends "the code is still unused" together with the tokens
-- it issues for it, and a false condition must roll all of them back
-- (internal/db.WriteBehind). SQLSTATE P0001, the message names the check.
CREATE FUNCTION idp_assert(ok boolean, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'idp_assert: %', what USING ERRCODE = 'P0001';
    END IF;
END
$$;

-- The token endpoint reads a code with its OpenID Connect session in one
-- statement; they share the authorization request's id.
CREATE INDEX oauth_oidc_request_idx ON oauth_oidc (request_id);
