-- Ending a session revokes its pending codes (internal/sessions: Revoke, on
-- sign-out, the janitor's expiry and an administrator's revoke-all, and
-- DropSecondFactor) by sid. Codes had no index on sid, so each revocation
-- read the whole code table: codes stay an hour past their minute of life
-- (store.TokenGrace), a table of hundreds of thousands of rows under load,
-- 0.2 s per revocation at 100k codes, held under the session's row locks.
-- The access and refresh tokens have had theirs from the start.
CREATE INDEX oauth_authorize_codes_sid_idx ON oauth_authorize_codes (sid);
