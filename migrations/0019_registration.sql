-- Dynamic client registration (RFC 7591) and management (RFC 7592), issue 16.

-- Initial access tokens an operator makes (idp clients registration-token):
-- a bearer credential that lets an app register a client. Kept only as
-- the SHA-256 of the token; it expires, and may be good for a number of
-- registrations (uses_left, NULL for any number until it expires).
CREATE TABLE registration_tokens (
    token_hash bytea PRIMARY KEY,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    uses_left  integer CHECK (uses_left >= 0)
);

-- A client registered through the API, with the SHA-256 of its
-- registration access token (RFC 7592): only such clients can be read,
-- replaced or deleted at /oauth2/register/{client_id}. It goes with its
-- client. open: registered without an initial access token, so it stays
-- a public native client through every update.
CREATE TABLE client_registrations (
    client_id         text PRIMARY KEY REFERENCES oauth_clients (id) ON DELETE CASCADE,
    access_token_hash bytea NOT NULL,
    open              boolean NOT NULL,
    created_at        timestamptz NOT NULL
);
