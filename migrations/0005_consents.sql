-- What a person allowed an app that asks for consent: the scopes, so a new
-- scope asks again.
CREATE TABLE consents (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes     text[] NOT NULL,
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
