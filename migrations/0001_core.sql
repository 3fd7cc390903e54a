-- Core schema: accounts, central SSO sessions, OAuth clients, fosite token
-- storage, signing keys, the logout outbox and the audit log.

CREATE TABLE users (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text NOT NULL,
    name         text NOT NULL DEFAULT '',
    is_admin     boolean NOT NULL DEFAULT false,
    require_mfa  boolean NOT NULL DEFAULT false,
    disabled_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE password_credentials (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Failed-guess counters for anything guessable: keyed by "pwd-user:<id>",
-- "pwd-ip:<addr>", "totp-user:<id>". Delays grow with failures and decay
-- once the window passes, so an attacker cannot lock a victim out for long.
CREATE TABLE throttle (
    key             text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    last_failure_at timestamptz NOT NULL DEFAULT now(),
    blocked_until   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE totp_credentials (
    user_id          uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_encrypted bytea NOT NULL,
    confirmed_at     timestamptz,
    -- Highest time step ever accepted; a code is accepted only for a larger
    -- step, enforced by a conditional UPDATE so concurrent replays lose.
    last_step        bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE recovery_codes (
    id         bigserial PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);

CREATE TABLE oauth_clients (
    id                                  text PRIMARY KEY,
    name                                text NOT NULL DEFAULT '',
    secret_hash                         bytea,
    public                              boolean NOT NULL DEFAULT false,
    redirect_uris                       text[] NOT NULL DEFAULT '{}',
    post_logout_redirect_uris           text[] NOT NULL DEFAULT '{}',
    backchannel_logout_uri              text NOT NULL DEFAULT '',
    backchannel_logout_session_required boolean NOT NULL DEFAULT true,
    grant_types                         text[] NOT NULL DEFAULT '{authorization_code,refresh_token}',
    response_types                      text[] NOT NULL DEFAULT '{code}',
    scopes                              text[] NOT NULL DEFAULT '{openid,profile,email,offline_access}',
    audience                            text[] NOT NULL DEFAULT '{}',
    require_consent                     boolean NOT NULL DEFAULT false,
    id_token_signed_response_alg        text NOT NULL DEFAULT 'RS256',
    created_at                          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sso_sessions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(), -- the public sid
    cookie_hash         bytea NOT NULL UNIQUE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    auth_time           timestamptz NOT NULL,
    amr                 text[] NOT NULL DEFAULT '{}',
    acr                 text NOT NULL DEFAULT '',
    user_agent          text NOT NULL DEFAULT '',
    ip                  text NOT NULL DEFAULT '',
    revoked_at          timestamptz,
    revoked_reason      text
);
CREATE INDEX sso_sessions_user_idx ON sso_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sso_sessions_expiry_idx ON sso_sessions (least(idle_expires_at, absolute_expires_at)) WHERE revoked_at IS NULL;

-- One row per app that holds a session under a sid.
CREATE TABLE client_sessions (
    sid        uuid NOT NULL REFERENCES sso_sessions (id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sid, client_id)
);

-- A sign-in in progress: which authorization request it resumes, how far the
-- person got, and how many wrong second factors it has seen. The browser holds
-- the flow id in a cookie; only its hash is stored.
CREATE TABLE login_flows (
    id_hash         bytea PRIMARY KEY,
    csrf_token      text NOT NULL,
    authorize_query text NOT NULL DEFAULT '',
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    stage           text NOT NULL DEFAULT 'password',
    mfa_failures    integer NOT NULL DEFAULT 0,
    -- sid of an existing session being stepped up, if any.
    step_up_sid     uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX login_flows_expiry_idx ON login_flows (expires_at);

-- fosite token storage: one table per kind, keyed by the SHA-256 of the
-- token signature, expiry and ownership in columns so revocation and clean-up
-- are queries.
CREATE TABLE oauth_authorize_codes (
    signature_hash bytea PRIMARY KEY,
    request_id     text NOT NULL,
    client_id      text NOT NULL,
    subject        text NOT NULL DEFAULT '',
    sid            uuid,
    active         boolean NOT NULL DEFAULT true,
    requested_at   timestamptz NOT NULL,
    expires_at     timestamptz,
    request        jsonb NOT NULL
);
CREATE TABLE oauth_pkce (LIKE oauth_authorize_codes INCLUDING ALL);
CREATE TABLE oauth_oidc (LIKE oauth_authorize_codes INCLUDING ALL);
CREATE TABLE oauth_access_tokens (LIKE oauth_authorize_codes INCLUDING ALL);
CREATE TABLE oauth_refresh_tokens (
    LIKE oauth_authorize_codes INCLUDING ALL,
    access_signature_hash bytea,
    -- offline_access grants survive a sign-out but not an admin revoke-all.
    offline               boolean NOT NULL DEFAULT false
);
CREATE INDEX oauth_authorize_codes_request_idx ON oauth_authorize_codes (request_id);
CREATE INDEX oauth_access_tokens_request_idx ON oauth_access_tokens (request_id);
CREATE INDEX oauth_refresh_tokens_request_idx ON oauth_refresh_tokens (request_id);
CREATE INDEX oauth_access_tokens_sid_idx ON oauth_access_tokens (sid);
CREATE INDEX oauth_refresh_tokens_sid_idx ON oauth_refresh_tokens (sid);
CREATE INDEX oauth_access_tokens_subject_idx ON oauth_access_tokens (subject);
CREATE INDEX oauth_refresh_tokens_subject_idx ON oauth_refresh_tokens (subject);
CREATE INDEX oauth_access_tokens_expiry_idx ON oauth_access_tokens (expires_at);
CREATE INDEX oauth_refresh_tokens_expiry_idx ON oauth_refresh_tokens (expires_at);

CREATE TABLE oauth_client_assertion_jti (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE signing_keys (
    kid               text PRIMARY KEY,
    alg               text NOT NULL,
    private_encrypted bytea NOT NULL,
    public_jwk        jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- A key is published from created_at and signs from active_at, so
    -- caches hold it before the first token it signs.
    active_at         timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz
);

-- One row per app to tell about an ended session. Delivery survives restarts
-- and is claimed with FOR UPDATE SKIP LOCKED by any instance.
CREATE TABLE logout_outbox (
    id              bigserial PRIMARY KEY,
    sid             uuid NOT NULL,
    subject         text NOT NULL,
    client_id       text NOT NULL,
    uri             text NOT NULL,
    include_sid     boolean NOT NULL DEFAULT true,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NOT NULL DEFAULT '',
    delivered_at    timestamptz,
    failed_at       timestamptz,
    abandoned_at    timestamptz
);
CREATE INDEX logout_outbox_due_idx ON logout_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX logout_outbox_sid_idx ON logout_outbox (sid);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'
);
