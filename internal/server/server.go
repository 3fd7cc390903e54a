// Package server wires the provider together: it builds every component
// from a Config and a database pool, mounts their routes on one mux, and
// runs the background work (logout delivery, clean-up) that every instance
// shares through PostgreSQL.
package server

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/account"
	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/alerts"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/console"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/registration"
	"github.com/idp/idp/internal/reqlimit"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/ssf/receiver"
	"github.com/idp/idp/internal/sso"
	"github.com/idp/idp/internal/sso/backchannel"
	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/idp/idp/internal/sso/store"
	"github.com/idp/idp/internal/throttle"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/internal/verify"
	"github.com/idp/idp/web"
)

// Config is everything an instance needs besides its database pool.
type Config struct {
	Issuer string
	// Secret is the server secret (IDP_SECRET): comma-separated values, the
	// first in use, the others still accepted (rotation). It keys token
	// HMACs and the encryption of signing keys and TOTP secrets.
	Secret          string
	RequireMFA      bool
	SessionIdle     time.Duration
	SessionAbsolute time.Duration
	Lifetimes       sso.Lifetimes
	Brand           web.Brand
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (IDP_TRUSTED_PROXIES); none by default.
	TrustedProxies ops.TrustedProxies
	// AllowPrivateBackchannel lets apps' back-channel logout URIs be on
	// this host, a private network or a link-local address
	// (IDP_ALLOW_PRIVATE_BACKCHANNEL): for demos and tests. Otherwise they
	// are refused at registration and at every delivery (netguard).
	AllowPrivateBackchannel bool
	// BreachedPasswordsURL, when set, is a Pwned Passwords range API
	// (IDP_BREACHED_PASSWORDS_URL) asked about every password being chosen.
	BreachedPasswordsURL string
	// SeparateMetrics keeps /metrics off Handler: the operator serves
	// Server.Ops on an address of its own (IDP_METRICS_ADDR).
	SeparateMetrics bool
	// MetricsToken, when set (IDP_METRICS_TOKEN), is the bearer token
	// /metrics asks for, on whichever listener serves it.
	MetricsToken string
	// AdminRequirePasskey (IDP_ADMIN_REQUIRE_PASSKEY) opens the admin
	// console only to sessions signed in with a passkey (acr
	// urn:idp:acr:phr), and the admin API only to people's tokens from
	// such a session.
	AdminRequirePasskey bool
	// DPoPNonces (IDP_DPOP_NONCES) makes every DPoP proof carry a nonce
	// this provider issued in the last minutes (RFC 9449 §8).
	DPoPNonces bool
	// JanitorInterval is how often the janitor sweeps (0: every 30 s). A
	// benchmark's soak shortens it to see the sweeps compete with the load.
	JanitorInterval time.Duration
	// Mail is the SMTP server (IDP_SMTP_URL, IDP_MAIL_FROM, parsed by
	// mail.ParseConfig); the zero value turns the mail features off.
	Mail mail.Config
	// OpenRegistration (IDP_OPEN_REGISTRATION) is registration.OpenNative
	// to let anyone register a public native client at /oauth2/register;
	// "" to take registrations only with an operator's initial access
	// token.
	OpenRegistration string
	// SignalPollInterval is how often the trusted poll transmitters are
	// polled (0: every 15 s).
	SignalPollInterval time.Duration
	// DeviceCodeLifetime (IDP_DEVICE_CODE_LIFETIME) is how long a device
	// authorization waits for the person, and DevicePollInterval
	// (IDP_DEVICE_POLL_INTERVAL, whole seconds) how often its device may
	// poll (RFC 8628); zero means sso.DefaultDeviceCodeLifetime and
	// sso.DefaultDevicePollInterval.
	DeviceCodeLifetime time.Duration
	DevicePollInterval time.Duration
	// SelfSignup (IDP_SELF_SIGNUP) lets people make their own account at
	// /signup with an address at one of SignupDomains (IDP_SIGNUP_DOMAINS,
	// lower case), made when the mailed link is confirmed. Needs Mail.
	SelfSignup    bool
	SignupDomains []string
	Logger        *slog.Logger
	Now           func() time.Time
}

// Defaults fills the zero fields.
func (c *Config) defaults() {
	if c.SessionIdle == 0 {
		c.SessionIdle = 8 * time.Hour
	}
	if c.SessionAbsolute == 0 {
		c.SessionAbsolute = 7 * 24 * time.Hour
	}
	if c.Lifetimes == (sso.Lifetimes{}) {
		c.Lifetimes = sso.DefaultLifetimes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.JanitorInterval <= 0 {
		c.JanitorInterval = janitorInterval
	}
	if c.Brand.Name == "" {
		c.Brand.Name = "idp"
	}
	if c.SignalPollInterval <= 0 {
		c.SignalPollInterval = 15 * time.Second
	}
}

// ConfigError is one mistake in a Config, in words an operator can act on,
// naming the setting by its flag (for idp serve, which says whether the
// operator used the flag or the variable) and its variable.
type ConfigError struct {
	Flag, Env string
	Problem   string // "must use https (http is allowed only for localhost)"
}

func (e ConfigError) Error() string { return e.Env + " " + e.Problem }

// Validate reports every configuration mistake at once (errors.Join of
// ConfigError).
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, env, problem string, args ...any) {
		errs = append(errs, ConfigError{Flag: flag, Env: env, Problem: fmt.Sprintf(problem, args...)})
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		bad("issuer", "IDP_ISSUER", "is required: the public URL of this provider, e.g. https://login.example.com")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		bad("issuer", "IDP_ISSUER", "must be an absolute http(s) URL, e.g. https://login.example.com")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.Issuer, "/"):
		bad("issuer", "IDP_ISSUER", "must have no query, fragment or trailing slash")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		bad("issuer", "IDP_ISSUER", "must use https (http is allowed only for localhost)")
	}
	if c.Secret == "" {
		bad("secret", "IDP_SECRET", "is required: at least 32 random characters (e.g. `openssl rand -base64 48`)")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < ops.MinScrapeTokenLen {
		bad("metrics-token", "IDP_METRICS_TOKEN", "must be at least %d random characters (e.g. `openssl rand -base64 32`)", ops.MinScrapeTokenLen)
	}
	if c.BreachedPasswordsURL != "" {
		if u, err := url.Parse(c.BreachedPasswordsURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("breached-passwords-url", "IDP_BREACHED_PASSWORDS_URL", "must be an http(s) URL such as %s, not %q",
				users.PwnedPasswordsURL, c.BreachedPasswordsURL)
		}
	}
	if c.OpenRegistration != "" && c.OpenRegistration != registration.OpenNative {
		bad("open-registration", "IDP_OPEN_REGISTRATION", "must be %q (public native clients may register without an initial access token) or empty, not %q",
			registration.OpenNative, c.OpenRegistration)
	}
	// Zero (or less) is the default here; idp serve refuses it first.
	if c.DeviceCodeLifetime > 0 && c.DeviceCodeLifetime < time.Minute {
		bad("device-code-lifetime", "IDP_DEVICE_CODE_LIFETIME", "must be at least 1m: a person needs the time to type the code, not %s", c.DeviceCodeLifetime)
	}
	if c.DevicePollInterval > 0 && (c.DevicePollInterval < time.Second || c.DevicePollInterval%time.Second != 0) {
		bad("device-poll-interval", "IDP_DEVICE_POLL_INTERVAL", "must be whole seconds, at least 1s (a device is told it in seconds), not %s", c.DevicePollInterval)
	} else if life := cmp.Or(max(c.DeviceCodeLifetime, 0), sso.DefaultDeviceCodeLifetime); c.DevicePollInterval >= life {
		bad("device-poll-interval", "IDP_DEVICE_POLL_INTERVAL", "must be shorter than the device code lifetime (%s), not %s", life, c.DevicePollInterval)
	}
	if c.SelfSignup && !c.Mail.Enabled() {
		bad("self-signup", "IDP_SELF_SIGNUP", "needs mail (IDP_SMTP_URL and IDP_MAIL_FROM): a sign-up is confirmed from its mail")
	}
	if c.SelfSignup && len(c.SignupDomains) == 0 {
		bad("signup-domains", "IDP_SIGNUP_DOMAINS", "is required with IDP_SELF_SIGNUP: the address domains that may sign up, e.g. example.com,example.org")
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Server is one provider instance.
type Server struct {
	Config  Config
	Pool    *pgxpool.Pool
	Handler http.Handler
	// Ops serves /metrics, /healthz and /readyz alone, for a listener that
	// only monitoring reaches.
	Ops      http.Handler
	Provider *sso.Provider
	Sessions *sessions.Manager
	Users    *users.Store
	Clients  *clients.Store
	TOTP     *mfa.TOTP
	// Passkeys is nil when the issuer's host is an IP address.
	Passkeys *passkey.Service
	Keys     *keys.Set
	Worker   *outbox.Worker
	// Reset is the password reset by mail; nil without mail.
	Reset *reset.Service
	// Registration registers clients by API (RFC 7591, RFC 7592).
	Registration *registration.Service
	// Signals is the Shared Signals receiver: trusted transmitters and
	// what they send.
	Signals *receiver.Receiver
	poller  *receiver.Poller
	// Verify is the verification of addresses by mail; nil without mail.
	Verify *verify.Service
}

// New builds an instance on pool (already migrated).
func New(ctx context.Context, cfg Config, pool *pgxpool.Pool) (*Server, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keyBox, err := secrets.New(cfg.Secret, keys.SecretPurpose)
	if err != nil {
		return nil, err
	}
	hmacSecret, rotated, err := hmacSecrets(cfg.Secret)
	if err != nil {
		return nil, err
	}
	keySet, err := keys.Load(ctx, pool, keyBox, cfg.Now)
	if err != nil {
		return nil, err
	}
	tpl, err := web.Parse(cfg.Brand, cfg.Logger)
	if err != nil {
		return nil, err
	}

	svc, err := NewServices(pool, cfg)
	if err != nil {
		return nil, err
	}
	sess, userStore, totp, passkeys, clientStore := svc.Sessions, svc.Users, svc.TOTP, svc.Passkeys, svc.Clients
	if passkeys == nil {
		// Allowed for local tests and demos on 127.0.0.1; everything but
		// passkeys works.
		cfg.Logger.Warn("passkeys are off: WebAuthn needs an issuer with a host name, not an IP address", "issuer", cfg.Issuer)
		if cfg.AdminRequirePasskey {
			return nil, errors.New("IDP_ADMIN_REQUIRE_PASSKEY needs passkeys, which need an IDP_ISSUER with a host name (localhost, login.example.com), not an IP address")
		}
	}

	dpopChecker := &dpop.Checker{Pool: pool, Now: cfg.Now}
	if cfg.DPoPNonces {
		// Derived from the server secret: every instance issues and
		// accepts the same nonces.
		if dpopChecker.NonceKey, err = hkdf.Key(sha256.New, hmacSecret, nil, "idp dpop nonce", 32); err != nil {
			return nil, err
		}
	}
	fositeStore := store.New(pool, clientStore)
	fositeStore.Now = cfg.Now
	metrics := ops.NewMetrics(pool, cfg.Now)
	errs := &pages.Errors{Templates: tpl, Logger: cfg.Logger}
	loginHandler := &login.Handler{
		Pool: pool, Sessions: sess, Users: userStore, TOTP: totp, Passkeys: passkeys, Templates: tpl, Errors: errs, Logger: cfg.Logger,
		Now: cfg.Now, FlowTTL: 15 * time.Minute, RequireMFA: cfg.RequireMFA, Observe: metrics.ObserveSignIn,
		RedirectURIs: func(ctx context.Context, id string) []string {
			c, err := clientStore.Get(ctx, id)
			if err != nil {
				return nil
			}
			return c.RedirectURIs
		},
		ClientName: func(ctx context.Context, id string) string {
			c, err := clientStore.Get(ctx, id)
			if err != nil {
				return ""
			}
			if c.Name != "" {
				return c.Name
			}
			return c.ID
		},
	}
	provider := &sso.Provider{
		Issuer: cfg.Issuer, Store: fositeStore, Clients: clientStore, Users: userStore, Sessions: sess,
		Login: loginHandler, Passkeys: passkeys, Keys: keySet, Templates: tpl, Errors: errs, Logger: cfg.Logger, Now: cfg.Now,
		OAuth2: sso.Compose(cfg.Issuer, hmacSecret, rotated, cfg.Lifetimes, fositeStore, keySet,
			&clients.KeyFetcher{AllowPrivate: cfg.AllowPrivateBackchannel}),
		DPoP:               dpopChecker,
		DeviceCodeLifetime: cfg.DeviceCodeLifetime, DevicePollInterval: cfg.DevicePollInterval,
		DeviceLimiter: &throttle.Limiter{Pool: pool, Now: cfg.Now, Free: 5, Base: time.Second, Max: 5 * time.Minute, Window: 15 * time.Minute},
	}
	logouts, err := backchannel.Sender{Pool: pool, Keys: keySet, Issuer: cfg.Issuer, Now: cfg.Now,
		AllowPrivate: cfg.AllowPrivateBackchannel}.Kind()
	if err != nil {
		return nil, err
	}
	ssfBox, err := secrets.New(cfg.Secret, ssf.SecretPurpose)
	if err != nil {
		return nil, err
	}
	streams := &ssf.Store{Pool: pool, Box: ssfBox, AllowPrivate: cfg.AllowPrivateBackchannel, Now: cfg.Now}
	svc.Admin.Streams = streams
	pushes, err := ssf.Pusher{Store: streams, Keys: keySet, Issuer: cfg.Issuer, AllowPrivate: cfg.AllowPrivateBackchannel,
		Now: cfg.Now}.Kind()
	if err != nil {
		return nil, err
	}
	worker := &outbox.Worker{Pool: pool, Now: cfg.Now, Logger: cfg.Logger,
		Kinds: map[string]outbox.Kind{sessions.LogoutKind: logouts, ssf.KindPush: pushes}}
	var alertService *alerts.Service
	var verifier *verify.Service
	if cfg.Mail.Enabled() {
		m, err := svc.Mail(cfg, pool)
		if err != nil {
			return nil, err
		}
		alertService, verifier = m.Alerts, m.Verify
		loginHandler.Reset = reset.New(pool, m.Mailer, cfg.Now)
		worker.Kinds[mail.OutboxKind] = m.Mailer.Kind()
		worker.Kinds[reset.OutboxKind] = loginHandler.Reset.Kind()
		loginHandler.OnSignIn = alertService.QueueSignIn
		worker.Kinds[alerts.OutboxKind] = alertService.Kind()
		cfg.Logger.Info("mail on: password reset, address verification and \"was this you?\" alerts by mail", "smtp", cfg.Mail.String())
	}

	// --- registration (owned by internal/registration) ---
	registrar := &registration.Service{Pool: pool, Clients: clientStore, Open: cfg.OpenRegistration, Issuer: cfg.Issuer, Now: cfg.Now,
		Tokens: &registration.Tokens{Pool: pool, Now: cfg.Now}}
	if cfg.OpenRegistration != "" {
		// Ten an hour from one address (the tenth starts the wait: Free
		// counts those that come before), then a minute, doubling to an hour.
		registrar.OpenLimiter = &throttle.Limiter{Pool: pool, Now: cfg.Now, Free: 9, Base: time.Minute, Max: time.Hour, Window: time.Hour}
	}
	provider.Registration = registrar.Enabled
	// --- end registration ---

	mux := http.NewServeMux()
	provider.Mount(mux)
	(&registration.Handler{Service: registrar, Logger: cfg.Logger}).Mount(mux)
	loginHandler.Mount(mux)
	// --- account (owned by internal/account) ---
	accountHandler := &account.Handler{Pool: pool, Sessions: sess, Users: userStore, TOTP: totp, Passkeys: passkeys, Login: loginHandler,
		Templates: tpl, Errors: errs, Logger: cfg.Logger, Now: cfg.Now, RequireMFA: cfg.RequireMFA, ClientName: loginHandler.ClientName,
		Email: verifier}
	accountHandler.Mount(mux)
	// --- end account ---
	// --- verify (owned by internal/verify) ---
	verifyHandler := &verify.Handler{Service: verifier, Templates: tpl, Errors: errs, Sessions: sess}
	if cfg.SelfSignup && verifier != nil {
		verifyHandler.Signups = &verify.Signups{Pool: pool, Users: userStore, Mailer: verifier.Mailer, Domains: cfg.SignupDomains,
			Clients: verify.SignupLimiter(pool, cfg.Now), Now: cfg.Now}
		loginHandler.SelfSignup = true
	}
	verifyHandler.Mount(mux)
	// --- end verify ---
	// --- admin (owned by internal/admin) ---
	adminAPI := &admin.API{Tokens: provider.OAuth2, Logger: cfg.Logger, Service: svc.Admin,
		RequirePasskey: cfg.AdminRequirePasskey}
	adminAPI.Mount(mux)
	// --- end admin ---
	// --- ssf (owned by internal/ssf) ---
	(&ssf.Handler{Issuer: cfg.Issuer, Store: streams, Tokens: provider.OAuth2, Keys: keySet, Logger: cfg.Logger,
		Now: cfg.Now}).Mount(mux)
	// --- end ssf ---
	// --- ssf receiver (owned by internal/ssf/receiver) ---
	txBox, err := secrets.New(cfg.Secret, receiver.SecretPurpose)
	if err != nil {
		return nil, err
	}
	signals := &receiver.Receiver{Pool: pool, Sessions: sess, Issuer: cfg.Issuer, Now: cfg.Now,
		Store:    &receiver.Store{Pool: pool, Box: txBox, AllowPrivate: cfg.AllowPrivateBackchannel, Issuer: cfg.Issuer, Now: cfg.Now},
		Verifier: &receiver.Verifier{Issuer: cfg.Issuer, AllowPrivate: cfg.AllowPrivateBackchannel, Now: cfg.Now}}
	(&receiver.Handler{Receiver: signals, Logger: cfg.Logger}).Mount(mux)
	// --- end ssf receiver ---
	// --- alerts (owned by internal/alerts) ---
	if alertService != nil {
		(&alerts.Handler{Service: alertService, Templates: tpl, Errors: errs, Logger: cfg.Logger}).Mount(mux)
	}
	// --- end alerts ---
	// --- console (owned by internal/console; the brand stylesheet by web) ---
	consoleHandler := &console.Handler{Admin: adminAPI.Service, Sessions: sess, Login: loginHandler, Codes: totp,
		RequirePasskey: cfg.AdminRequirePasskey, Templates: tpl, Errors: errs, Logger: cfg.Logger, Now: cfg.Now}
	consoleHandler.Mount(mux)
	mux.Handle("GET /static/brand.css", tpl.BrandCSS())
	// --- end console ---
	mux.Handle("GET /static/", web.Static())
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/account", http.StatusFound)
	})

	// Bounded before any handler reads them: bodies, queries, no multipart.
	// A WebAuthn credential (passkey.MaxResponseBytes at most) is the one
	// large thing a page sends; the passkey handlers bound it themselves.
	credential := int64(passkey.MaxResponseBytes + 8<<10)
	limited := reqlimit.Limits{
		Larger: map[string]int64{"/login/passkey": credential, "/login/totp/passkey": credential,
			"/login/enroll/passkey": credential, "/account/passkeys": credential},
		JSONPaths: []string{"/oauth2/register", "/oauth2/token", "/oauth2/par", "/oauth2/device/auth", "/oauth2/introspect",
			"/oauth2/revoke", "/userinfo", "/admin/api/", ssf.PathConfiguration, "/ssf/"},
		Page: tpl.Error,
	}.Wrap(mux)
	// The browser and address of each request reach the alerts of the
	// changes it makes (alerts.WithClient).
	limited = alerts.WithClient(limited)
	handler, opsHandler := withOps(cfg, pool, mux, limited, metrics, worker)
	return &Server{
		Config: cfg, Pool: pool, Handler: handler, Ops: opsHandler, Provider: provider, Sessions: sess, Users: userStore,
		Clients: clientStore, TOTP: totp, Passkeys: passkeys, Keys: keySet, Worker: worker, Reset: loginHandler.Reset,
		Registration: registrar,
		Signals:      signals, poller: &receiver.Poller{Receiver: signals, Interval: cfg.SignalPollInterval, Logger: cfg.Logger},
		Verify: verifier,
	}, nil
}

// Services are the domain services of an instance: built one way, by
// NewServices, for the server and for the command line, so an action taken
// with `idp users …` and one through the admin API or the console are the
// same action.
type Services struct {
	Users    *users.Store
	Sessions *sessions.Manager
	TOTP     *mfa.TOTP
	// Passkeys is nil when the issuer cannot have them (no issuer, or an
	// IP address: WebAuthn has no relying party id for one).
	Passkeys *passkey.Service
	// Clients is the one client registry (and cache) of the instance: the
	// provider's and the admin service's.
	Clients *clients.Store
	Admin   *admin.Service
}

// NewServices builds the domain services on pool from cfg (defaults
// applied). With cfg.Secret empty — the command line's actions that never
// open a sealed value nor check a form — TOTP can remove factors but not
// check codes, and sessions sign no forms.
func NewServices(pool *pgxpool.Pool, cfg Config) (*Services, error) {
	cfg.defaults()
	sess := &sessions.Manager{Pool: pool, Now: cfg.Now, IdleTimeout: cfg.SessionIdle,
		AbsoluteTimeout: cfg.SessionAbsolute, Secure: strings.HasPrefix(cfg.Issuer, "https://")}
	limiter := throttle.Default(pool)
	limiter.Now = cfg.Now
	totp := &mfa.TOTP{Pool: pool, Issuer: cfg.Brand.Name, Limiter: limiter, Now: cfg.Now}
	if cfg.Secret != "" {
		hmacSecret, rotated, err := hmacSecrets(cfg.Secret)
		if err != nil {
			return nil, err
		}
		if sess.CSRFKey, err = hkdf.Key(sha256.New, hmacSecret, nil, "idp csrf", 32); err != nil {
			return nil, err
		}
		for _, old := range rotated {
			k, err := hkdf.Key(sha256.New, old, nil, "idp csrf", 32)
			if err != nil {
				return nil, err
			}
			sess.RotatedCSRFKeys = append(sess.RotatedCSRFKeys, k)
		}
		if totp.Box, err = secrets.New(cfg.Secret, mfa.SecretPurpose); err != nil {
			return nil, err
		}
	}
	userStore := users.NewStore(pool)
	userStore.Now = cfg.Now
	userStore.Limiter.Now = cfg.Now
	userStore.Logger = cfg.Logger
	if cfg.BreachedPasswordsURL != "" {
		userStore.Breached = &users.BreachedPasswords{URL: cfg.BreachedPasswordsURL}
	}
	// Passkeys run ceremonies only for an issuer with a host name;
	// without an issuer (the command line) or with an IP address one, a
	// pool-only service still lists and removes them.
	keys, err := passkey.New(pool, cfg.Issuer, cfg.Brand.Name, cfg.Now)
	ceremonies := err == nil
	if !ceremonies {
		if cfg.Issuer != "" && !errors.Is(err, passkey.ErrUnavailable) {
			return nil, err
		}
		keys = &passkey.Service{Pool: pool, Now: cfg.Now}
	}
	clientStore := clients.NewStore(pool)
	clientStore.AllowPrivateBackchannel = cfg.AllowPrivateBackchannel
	svc := &Services{Users: userStore, Sessions: sess, TOTP: totp, Clients: clientStore,
		Admin: &admin.Service{Pool: pool, Users: userStore, Sessions: sess, Clients: clientStore, MFA: totp, Keys: keys, Now: cfg.Now}}
	if cfg.Issuer != "" {
		svc.PublishSignals(cfg.Issuer, cfg.Now)
	}
	if ceremonies {
		svc.Passkeys = keys
	}
	return svc, nil
}

// PublishSignals makes the services' changes security events (package
// ssf), queued in the transaction of each change for the streams that want
// them: every end of a session a CAEP session-revoked, a person's or an
// administrator's change of a factor a credential-change, disabling,
// enabling and deleting an account RISC's account events. issuer names
// the person in them (iss_sub).
func (s *Services) PublishSignals(issuer string, now func() time.Time) {
	p := &ssf.Publisher{Pool: s.Sessions.Pool, Issuer: issuer, Now: now}
	s.Sessions.OnRevoke = append(s.Sessions.OnRevoke, p.OnRevoke)
	s.Sessions.OnFactorsChanged = append(s.Sessions.OnFactorsChanged, p.OnFactorsChanged)
	s.Admin.OnChange = append(s.Admin.OnChange, p.OnAdminChange)
}

// Alert makes the services' changes "was this you?" alerts (package
// alerts), queued in the transaction of each change: a person's change of
// their password or second factors, an administrator's setting a password
// or removing factors, and an administrator's revoke-all.
func (s *Services) Alert(a *alerts.Service) {
	s.Sessions.OnFactorsChanged = append(s.Sessions.OnFactorsChanged, a.OnFactorsChanged)
	s.Sessions.OnRevoke = append(s.Sessions.OnRevoke, a.OnRevoke)
	s.Admin.OnChange = append(s.Admin.OnChange, a.OnAdminChange)
}

// hmacSecrets derives fosite's 32-byte token HMAC keys from the server
// secret(s): the first signs, the rest still verify.
func hmacSecrets(secret string) ([]byte, [][]byte, error) {
	var all [][]byte
	for _, s := range strings.Split(secret, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		k, err := hkdf.Key(sha256.New, []byte(s), nil, "idp token hmac", 32)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, k)
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("server: empty IDP_SECRET")
	}
	return all[0], all[1:], nil
}

// Run does the background work until ctx ends: logout delivery and the
// janitor. Every instance runs it; rows are claimed, never shared.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- s.Worker.Run(ctx) }()
	go func() { errc <- s.janitor(ctx) }()
	go func() { errc <- s.poller.Run(ctx) }()
	return errors.Join(<-errc, <-errc, <-errc)
}

// janitor ends expired sessions through the revocation path (so apps are
// told), deletes expired flows and tokens in bounded batches, and keeps the
// signing keys current. It returns when ctx ends.
func (s *Server) janitor(ctx context.Context) error {
	t := time.NewTicker(s.Config.JanitorInterval)
	defer t.Stop()
	var lastFull time.Time
	for {
		full := time.Since(lastFull) >= recordsInterval
		s.sweep(ctx, full)
		if full {
			lastFull = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep is one round of the janitor; full adds the slower clean-ups.
func (s *Server) sweep(ctx context.Context, full bool) {
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	// A failover may have left the pool on a server that is now read-only:
	// checking first lets go of those connections (db.CheckWritable), so an
	// instance nobody sends requests to recovers too, and spares a sweep
	// of errors.
	if err := db.CheckWritable(ctx, s.Pool); err != nil {
		if ctx.Err() == nil {
			s.Config.Logger.Warn("janitor: database not writable; sweep skipped", "err", err)
		}
		return
	}
	if res, err := s.Sessions.ExpireDue(ctx, 500); err != nil {
		if ctx.Err() == nil {
			s.Config.Logger.Error("janitor: expire sessions", "err", err)
		}
	} else if res.Sessions > 0 {
		s.Config.Logger.Info("janitor: sessions expired", "sessions", res.Sessions, "notifications", res.Notifications)
	}
	s.cleanUp(ctx, full)
	if full {
		if _, err := s.Signals.Forget(ctx); err != nil && ctx.Err() == nil {
			s.Config.Logger.Error("janitor: forget received SETs", "err", err)
		}
	}
	s.refreshKeys(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.Config.Logger.Warn("janitor: sweep timed out; the next one resumes", "timeout", sweepTimeout)
	}
}
