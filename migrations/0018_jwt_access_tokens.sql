-- JWT access tokens (RFC 9068), per client (package sso, jwtaccess.go):
-- 'opaque' clients get fosite's HMAC tokens, 'jwt' ones a signed JWT that
-- a resource server can verify against the JWKS. Either kind is stored
-- the same way (the SHA-256 of its signature in oauth_access_tokens), so
-- revocation and introspection treat both alike.
ALTER TABLE oauth_clients
    ADD COLUMN access_token_format text NOT NULL DEFAULT 'opaque'
        CHECK (access_token_format IN ('opaque', 'jwt'));
