package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/server"
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
	dbURL := c.databaseFlag(fs)
	issuer := fs.String("issuer", c.getenv("IDP_ISSUER"), "public issuer `URL` ($IDP_ISSUER)")
	addr := fs.String("addr", c.envOr("IDP_ADDR", ":8080"), "listen `address` ($IDP_ADDR)")
	breached := fs.String("breached-passwords-url", c.getenv("IDP_BREACHED_PASSWORDS_URL"),
		"ask this Pwned Passwords range API (k-anonymity: 5 hex digits of a SHA-1 leave) about every password being chosen,\n"+
			"e.g. "+users.PwnedPasswordsURL+"; none by default ($IDP_BREACHED_PASSWORDS_URL)")
	metricsAddr := fs.String("metrics-addr", c.getenv("IDP_METRICS_ADDR"),
		"serve /metrics (and /healthz, /readyz) on this `address` only, e.g. 127.0.0.1:9464, instead of on --addr ($IDP_METRICS_ADDR)")
	metricsToken := fs.String("metrics-token", "",
		"bearer `token` /metrics asks for, ≥32 random characters; none by default (default $IDP_METRICS_TOKEN)")
	secret := fs.String("secret", "", "server secret, ≥32 characters, comma-separated to rotate (default $IDP_SECRET)")
	requireMFA := fs.String("require-mfa", c.envOr("IDP_REQUIRE_MFA", "false"), "every user must use 2FA ($IDP_REQUIRE_MFA)")
	adminPasskey := fs.String("admin-require-passkey", c.envOr("IDP_ADMIN_REQUIRE_PASSKEY", "false"),
		"the admin console and API take only administrators signed in with a passkey ($IDP_ADMIN_REQUIRE_PASSKEY)")
	idle := fs.String("session-idle-timeout", c.envOr("IDP_SESSION_IDLE_TIMEOUT", "8h"), "SSO session idle timeout ($IDP_SESSION_IDLE_TIMEOUT)")
	absolute := fs.String("session-absolute-timeout", c.envOr("IDP_SESSION_ABSOLUTE_TIMEOUT", "168h"), "SSO session lifetime ($IDP_SESSION_ABSOLUTE_TIMEOUT)")
	migrate := fs.String("migrate", c.envOr("IDP_MIGRATE", "true"), "apply pending migrations at start ($IDP_MIGRATE)")
	logFormat := fs.String("log-format", c.envOr("IDP_LOG_FORMAT", "text"), "text or json ($IDP_LOG_FORMAT)")
	brandName := fs.String("brand-name", c.envOr("IDP_BRAND_NAME", "idp"), "product name on the pages ($IDP_BRAND_NAME)")
	brandLogo := fs.String("brand-logo-url", c.getenv("IDP_BRAND_LOGO_URL"), "logo on the pages: an https `URL` or a path under /static/ ($IDP_BRAND_LOGO_URL)")
	brandColor := fs.String("brand-color", c.envOr("IDP_BRAND_COLOR", web.DefaultColor), "primary `colour` of the pages, #rgb or #rrggbb ($IDP_BRAND_COLOR)")
	trustedProxies := fs.String("trusted-proxies", c.getenv("IDP_TRUSTED_PROXIES"),
		"comma-separated `addresses or CIDRs` of reverse proxies whose X-Forwarded-For names the client ($IDP_TRUSTED_PROXIES)")
	memoryLimit := fs.String("memory-limit", c.envOr("IDP_MEMORY_LIMIT", "auto"), fmt.Sprintf(
		"soft memory `limit` the garbage collector works to: auto (%d MiB on this machine), off, or a size like 512MiB;\n"+
			"ignored when GOGC or GOMEMLIMIT is set ($IDP_MEMORY_LIMIT)", server.DefaultMemoryLimit()>>20))
	if err := parse(fs, args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = c.getenv("IDP_SECRET")
	}
	if *metricsToken == "" {
		*metricsToken = c.getenv("IDP_METRICS_TOKEN")
	}
	cfg := server.Config{Issuer: *issuer, Secret: *secret, BreachedPasswordsURL: *breached,
		SeparateMetrics: *metricsAddr != "", MetricsToken: *metricsToken,
		Brand: web.Brand{Name: *brandName, LogoURL: *brandLogo, Color: *brandColor}}
	var err error
	if err := web.CheckColor(*brandColor); err != nil {
		return usagef("serve: --brand-color / IDP_BRAND_COLOR: %v", err)
	}
	if *brandLogo != "" {
		if err := web.CheckLogoURL(*brandLogo); err != nil {
			return usagef("serve: --brand-logo-url / IDP_BRAND_LOGO_URL: %v", err)
		}
	}
	if cfg.RequireMFA, err = strconv.ParseBool(*requireMFA); err != nil {
		return usagef("serve: --require-mfa / IDP_REQUIRE_MFA must be true or false, not %q", *requireMFA)
	}
	if cfg.AdminRequirePasskey, err = strconv.ParseBool(*adminPasskey); err != nil {
		return usagef("serve: --admin-require-passkey / IDP_ADMIN_REQUIRE_PASSKEY must be true or false, not %q", *adminPasskey)
	}
	if cfg.SessionIdle, err = positiveDuration("session-idle-timeout", *idle); err != nil {
		return err
	}
	if cfg.SessionAbsolute, err = positiveDuration("session-absolute-timeout", *absolute); err != nil {
		return err
	}
	doMigrate, err := strconv.ParseBool(*migrate)
	if err != nil {
		return usagef("serve: --migrate / IDP_MIGRATE must be true or false, not %q", *migrate)
	}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(c.stderr, nil))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(c.stderr, nil))
	default:
		return usagef("serve: --log-format must be text or json, not %q", *logFormat)
	}
	if cfg.TrustedProxies, err = ops.ParseTrustedProxies(*trustedProxies); err != nil {
		return usagef("serve: --trusted-proxies / IDP_TRUSTED_PROXIES: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	limit, err := server.ParseMemoryLimit(*memoryLimit)
	if err != nil {
		return usagef("serve: --memory-limit / IDP_MEMORY_LIMIT: %v", err)
	}
	if server.TuneMemory(limit, c.getenv) {
		cfg.Logger.Info("memory limit set", "bytes", limit)
	}

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

func positiveDuration(flag, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usagef("serve: --%s must be a positive duration like 8h or 30m, not %q", flag, v)
	}
	return d, nil
}
