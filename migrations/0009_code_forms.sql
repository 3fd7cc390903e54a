-- fosite stores a code's PKCE and OpenID Connect sessions as requests of
-- their own, but they are the code's request with another form. When the
-- authorization endpoint issues a code (store.Batched), their forms travel
-- in the code's row instead: two row inserts fewer per code issued, and a
-- delete fewer per code exchanged. NULL means the session, if any, is a
-- row of oauth_pkce or oauth_oidc (codes stored one call at a time, or
-- before this migration). Nullable without a default: no table rewrite.
ALTER TABLE oauth_authorize_codes
    ADD COLUMN pkce_form jsonb,
    ADD COLUMN oidc_form jsonb;
