-- The janitor deletes expired codes by expires_at, and the metrics count
-- delivered notifications without scanning the whole outbox.
CREATE INDEX oauth_authorize_codes_expiry_idx ON oauth_authorize_codes (expires_at);
CREATE INDEX oauth_pkce_expiry_idx ON oauth_pkce (expires_at);
CREATE INDEX oauth_oidc_expiry_idx ON oauth_oidc (expires_at);
CREATE INDEX logout_outbox_delivered_idx ON logout_outbox (delivered_at) WHERE delivered_at IS NOT NULL;
