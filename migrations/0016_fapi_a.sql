-- FAPI 2.0 building blocks, part a (issue 16): pushed authorization
-- requests (RFC 9126) and private_key_jwt client authentication (RFC 7523).

-- A client that must push its authorization requests: the authorization
-- endpoint refuses it a request that did not come through PAR.
ALTER TABLE oauth_clients ADD COLUMN require_pushed_authorization_requests boolean NOT NULL DEFAULT false;

-- How a client authenticates at the token endpoint (RFC 7591 metadata):
-- '' for a secret (client_secret_basic or client_secret_post, both
-- accepted) or none for a public client; 'private_key_jwt' with the
-- public keys in jwks or at jwks_uri, and the one algorithm its
-- assertions are signed with.
ALTER TABLE oauth_clients
    ADD COLUMN token_endpoint_auth_method      text NOT NULL DEFAULT '',
    ADD COLUMN token_endpoint_auth_signing_alg text NOT NULL DEFAULT '',
    ADD COLUMN jwks                            jsonb,
    ADD COLUMN jwks_uri                        text NOT NULL DEFAULT '';

-- A pushed authorization request, until the authorization endpoint
-- consumes it (deleting the row: single use on every instance) or it
-- expires. Keyed by the SHA-256 of its request_uri, which is a bearer
-- reference to the request; bound to the client that pushed it.
CREATE TABLE oauth_par_requests (
    request_uri_hash bytea PRIMARY KEY,
    client_id        text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    expires_at       timestamptz NOT NULL,
    request          jsonb NOT NULL
);
CREATE INDEX oauth_par_requests_expires_at ON oauth_par_requests (expires_at);
