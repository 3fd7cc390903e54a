package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/sso"
	"github.com/idp/idp/internal/sso/keys/libcrypto"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// envOr returns the environment value of name, or def.
func (c *cli) envOr(name, def string) string {
	if v := c.getenv(name); v != "" {
		return v
	}
	return def
}

// serveCommand runs the identity provider until ctx ends, then drains
// in-flight requests and background work.
func serveCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("serve", "[flags]")
	set := newSettings(fs, c.getenv)
	dbURL := set.String("database-url", "IDP_DATABASE_URL", "", "PostgreSQL `URL`", true)
	issuer := set.String("issuer", "IDP_ISSUER", "", "public issuer `URL`", false)
	addr := set.String("addr", "IDP_ADDR", ":8080", "listen `address`", false)
	breached := set.String("breached-passwords-url", "IDP_BREACHED_PASSWORDS_URL", "",
		"ask this Pwned Passwords range API (k-anonymity: 5 hex digits of a SHA-1 leave) about every password being chosen,\n"+
			"e.g. "+users.PwnedPasswordsURL+"; none by default", false)
	metricsAddr := set.String("metrics-addr", "IDP_METRICS_ADDR", "",
		"serve /metrics (and /healthz, /readyz) on this `address` only, e.g. 127.0.0.1:9464, instead of on --addr", false)
	metricsToken := set.String("metrics-token", "IDP_METRICS_TOKEN", "", "bearer `token` /metrics asks for, ≥32 random characters; none by default", true)
	smtpURL := set.String("smtp-url", "IDP_SMTP_URL", "",
		"SMTP server `URL` for the mail features (password reset): smtp://user:pass@host:587 (STARTTLS required),\n"+
			"smtps://user:pass@host:465, or smtp://localhost:1025?tls=none to a local mail catcher; none by default: mail off", true)
	mailFrom := set.String("mail-from", "IDP_MAIL_FROM", "", "sender `address` of the mail, e.g. \"Example Login <login@example.com>\"", false)
	secret := set.String("secret", "IDP_SECRET", "", "server secret, ≥32 characters, comma-separated to rotate", true)
	requireMFA := set.Bool("require-mfa", "IDP_REQUIRE_MFA", false, "every user must use 2FA")
	adminPasskey := set.Bool("admin-require-passkey", "IDP_ADMIN_REQUIRE_PASSKEY", false,
		"the admin console and API take only administrators signed in with a passkey")
	idle := set.Duration("session-idle-timeout", "IDP_SESSION_IDLE_TIMEOUT", 8*time.Hour, "SSO session idle timeout")
	absolute := set.Duration("session-absolute-timeout", "IDP_SESSION_ABSOLUTE_TIMEOUT", 168*time.Hour, "SSO session lifetime")
	migrate := set.Bool("migrate", "IDP_MIGRATE", true, "apply pending migrations at start")
	logFormat := set.String("log-format", "IDP_LOG_FORMAT", "text", "text or json", false)
	brandName := set.String("brand-name", "IDP_BRAND_NAME", "idp", "product name on the pages", false)
	brandLogo := set.String("brand-logo-url", "IDP_BRAND_LOGO_URL", "", "logo on the pages: an https `URL` or a path under /static/", false)
	brandColor := set.String("brand-color", "IDP_BRAND_COLOR", web.DefaultColor, "primary `colour` of the pages, #rgb or #rrggbb", false)
	allowPrivateBackchannel := set.Bool("allow-private-backchannel", "IDP_ALLOW_PRIVATE_BACKCHANNEL", false,
		"let back-channel logout URIs be on this host, a private network or a link-local address: for demos and tests")
	dpopNonces := set.Bool("dpop-nonces", "IDP_DPOP_NONCES", false,
		"DPoP proofs must carry a server nonce (RFC 9449 §8): a stolen proof is good for minutes at most")
	openRegistration := set.String("open-registration", "IDP_OPEN_REGISTRATION", "",
		"native: anyone may register a public native client (loopback redirect URIs, no secret) at /oauth2/register;\n"+
			"empty: only with an initial access token (idp clients registration-token)", false)
	trustedProxies := set.String("trusted-proxies", "IDP_TRUSTED_PROXIES", "",
		"comma-separated `addresses or CIDRs` of reverse proxies whose X-Forwarded-For names the client", false)
	selfSignup := set.Bool("self-signup", "IDP_SELF_SIGNUP", false,
		"people may make their own account at /signup (needs mail and --signup-domains)")
	signupDomains := set.String("signup-domains", "IDP_SIGNUP_DOMAINS", "",
		"comma-separated address `domains` that may sign up, e.g. example.com,example.org", false)
	deviceLifetime := set.Duration("device-code-lifetime", "IDP_DEVICE_CODE_LIFETIME", sso.DefaultDeviceCodeLifetime,
		"how long a device authorization (RFC 8628) waits for the person to enter its code, at least 1m")
	devicePoll := set.Duration("device-poll-interval", "IDP_DEVICE_POLL_INTERVAL", sso.DefaultDevicePollInterval,
		"how often a device may poll for its tokens, in whole seconds")
	memoryLimit := set.String("memory-limit", "IDP_MEMORY_LIMIT", "auto", fmt.Sprintf(
		"soft memory `limit` the garbage collector works to: auto (%d MiB on this machine), off, or a size like 512MiB;\n"+
			"ignored when GOGC or GOMEMLIMIT is set", server.DefaultMemoryLimit()>>20), false)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := server.Config{Issuer: *issuer, Secret: *secret, BreachedPasswordsURL: *breached,
		SeparateMetrics: *metricsAddr != "", MetricsToken: *metricsToken, RequireMFA: *requireMFA, AdminRequirePasskey: *adminPasskey,
		SessionIdle: *idle, SessionAbsolute: *absolute, AllowPrivateBackchannel: *allowPrivateBackchannel, DPoPNonces: *dpopNonces,
		OpenRegistration: *openRegistration, DeviceCodeLifetime: *deviceLifetime, DevicePollInterval: *devicePoll,
		Brand: web.Brand{Name: *brandName, LogoURL: *brandLogo, Color: *brandColor}, SelfSignup: *selfSignup}
	for _, d := range strings.Split(*signupDomains, ",") {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			cfg.SignupDomains = append(cfg.SignupDomains, d)
		}
	}
	set.required("database-url", *dbURL, "a PostgreSQL URL")
	set.positive("session-idle-timeout", *idle)
	set.positive("session-absolute-timeout", *absolute)
	set.positive("device-code-lifetime", *deviceLifetime)
	set.positive("device-poll-interval", *devicePoll)
	if err := web.CheckColor(*brandColor); err != nil {
		set.fail("brand-color", "%v", err)
	}
	if *brandLogo != "" {
		if err := web.CheckLogoURL(*brandLogo); err != nil {
			set.fail("brand-logo-url", "%v", err)
		}
	}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(c.stderr, nil))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(c.stderr, nil))
	default:
		set.fail("log-format", "must be text or json, not %q", *logFormat)
	}
	var err error
	if cfg.TrustedProxies, err = ops.ParseTrustedProxies(*trustedProxies); err != nil {
		set.fail("trusted-proxies", "%v", err)
	}
	limit, err := server.ParseMemoryLimit(*memoryLimit)
	if err != nil {
		set.fail("memory-limit", "%v", err)
	}
	switch m, err := mail.ParseConfig(*smtpURL, *mailFrom); {
	case errors.Is(err, mail.ErrNotConfigured):
	case err != nil:
		for _, e := range unjoin(err) {
			msg := e.Error()
			if rest, ok := strings.CutPrefix(msg, "IDP_MAIL_FROM "); ok {
				set.fail("mail-from", "%s", rest)
			} else {
				msg = strings.TrimPrefix(strings.TrimPrefix(msg, "IDP_SMTP_URL: "), "IDP_SMTP_URL ")
				set.fail("smtp-url", "%s", msg)
			}
		}
	default:
		cfg.Mail = m
	}
	var invalid server.ConfigError
	for _, e := range unjoin(cfg.Validate()) {
		if errors.As(e, &invalid) {
			set.fail(invalid.Flag, "%s", invalid.Problem)
		} else {
			set.errs = append(set.errs, e)
		}
	}
	if err := set.err(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if server.TuneMemory(limit, c.getenv) {
		cfg.Logger.Info("memory limit set", "bytes", limit)
	}
	doMigrate := *migrate

	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if doMigrate {
		applied, err := db.Migrate(ctx, pool)
		if err != nil {
			return err
		}
		for _, m := range applied {
			cfg.Logger.Info("migration applied", "version", m)
		}
	} else if pending, err := db.Pending(ctx, pool); err != nil {
		return err
	} else if len(pending) > 0 {
		return fmt.Errorf("serve: %d migrations pending (run `idp migrate` or set IDP_MIGRATE=true)", len(pending))
	}

	if off, err := db.MaintenanceOff(ctx, pool); err != nil {
		return err
	} else if len(off) > 0 {
		cfg.Logger.Warn("PostgreSQL runs with table maintenance off: nothing analyzes the tables, and sign-in slows as sessions accumulate; turn it on",
			"off", strings.Join(off, ","))
	}
	srv, err := server.New(ctx, cfg, pool)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	servers := []*http.Server{newHTTPServer(srv.Handler)}
	listeners := []net.Listener{ln}
	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("serve: listen for metrics: %w", err)
		}
		servers = append(servers, newHTTPServer(srv.Ops))
		listeners = append(listeners, mln)
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	workDone := make(chan error, 1)
	go func() { workDone <- srv.Run(workCtx) }()
	serveDone := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { serveDone <- hs.Serve(listeners[i]) }()
	}
	cfg.Logger.Info("idp listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "rsa_signer", libcrypto.Version())
	if len(listeners) > 1 {
		cfg.Logger.Info("metrics listening", "addr", listeners[1].Addr().String())
	}

	select {
	case err = <-serveDone:
	case <-ctx.Done():
		cfg.Logger.Info("shutting down: draining requests")
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	for _, hs := range servers {
		err = errors.Join(err, hs.Shutdown(shutCtx))
	}
	cancel()
	// Stop claiming background work; in-flight deliveries finish and record
	// their outcome, and anything unfinished is picked up by another
	// instance or the next start.
	stopWork()
	<-workDone
	// A server only ends on its own with a real error: http.ErrServerClosed
	// comes after Shutdown, which nobody waits for here.
	return err
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// unjoin is the errors of errors.Join, or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
