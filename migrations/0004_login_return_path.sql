-- Where a sign-in started outside an authorization request (the account
-- page, the admin console) returns when it is done.
ALTER TABLE login_flows ADD COLUMN return_path text NOT NULL DEFAULT '';
