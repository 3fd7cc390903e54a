-- A password an administrator set is temporary: the person must choose
-- their own at the next sign-in, after proving every factor, before any
-- session is made, and it stops working at expires_at if still unused.
-- The sign-in in progress carries the flag and the authentication methods
-- the session will get once the new password is in.
ALTER TABLE password_credentials
    ADD COLUMN must_change boolean NOT NULL DEFAULT false,
    ADD COLUMN expires_at timestamptz;
ALTER TABLE login_flows
    ADD COLUMN must_change_password boolean NOT NULL DEFAULT false,
    ADD COLUMN pending_amr text[],
    ADD COLUMN pending_acr text NOT NULL DEFAULT '';
