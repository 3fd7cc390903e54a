package server

import (
	"context"
	"github.com/idp/idp/internal/alerts"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/registration"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/backchannel"
	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/store"
	"github.com/idp/idp/internal/throttle"
	"github.com/idp/idp/internal/verify"
)

// Operational settings. They are constants rather than Config fields until
// an operator needs to change one.
const (
	// requestTimeout is every request's deadline. Handlers hand the
	// request context to the database, so a database that hangs (rather
	// than refusing) costs a request at most this long before it gets its
	// 503. It is well above the slowest healthy request (a password hash
	// under load).
	requestTimeout = 10 * time.Second

	// janitorInterval is how often the janitor sweeps unless
	// Config.JanitorInterval says otherwise. It also bounds how
	// long a key rotated by another instance takes to be published and
	// used here; idp keys rotate's default --publish-ahead allows for it.
	janitorInterval = 30 * time.Second
	// recordsInterval is how often the janitor also sweeps the tables it
	// has no index for (throttle, delivered logout notifications).
	recordsInterval = 10 * time.Minute
	// sweepTimeout bounds one sweep, so a hung database cannot hold the
	// janitor forever.
	sweepTimeout = 2 * time.Minute
)

// withOps registers the operational endpoints on mux and wraps routed (mux,
// or a handler in front of it that hands the mux the same request) in the
// request middleware (request id, access log, metrics, deadline). The
// worker's delivery attempts are counted in the same registry. opsOnly serves the operational endpoints alone;
// with cfg.SeparateMetrics, /metrics is only there. The probes stay open
// (they say only up or not); /metrics asks for cfg.MetricsToken if set.
func withOps(cfg Config, pool *pgxpool.Pool, mux *http.ServeMux, routed http.Handler, metrics *ops.Metrics, worker *outbox.Worker) (main, opsOnly http.Handler) {
	worker.Observe = func(a outbox.Attempt) {
		if a.Kind == sessions.LogoutKind {
			metrics.ObserveLogoutDelivery(a.ClientID, a.Outcome, a.Since)
		}
	}
	health := &ops.Health{Pool: pool}
	om := http.NewServeMux()
	for _, m := range []*http.ServeMux{mux, om} {
		m.HandleFunc("GET /healthz", health.Live)
		m.HandleFunc("GET /readyz", health.Ready)
	}
	scrape := metrics.Handler()
	if cfg.MetricsToken != "" {
		scrape = ops.RequireBearer(cfg.MetricsToken, scrape)
	}
	om.Handle("GET /metrics", scrape)
	if !cfg.SeparateMetrics {
		mux.Handle("GET /metrics", scrape)
	}
	mw := &ops.Middleware{Logger: cfg.Logger, Metrics: metrics, Timeout: requestTimeout,
		TrustedProxies: cfg.TrustedProxies, HSTS: ops.HSTSFor(cfg.Issuer)}
	return mw.Wrap(routed), om
}

// sweeps are every package's declarations of what the janitor deletes.
var sweeps = slices.Concat(store.Sweeps, dpop.Sweeps, passkey.Sweeps, login.Sweeps, throttle.Sweeps, outbox.Sweeps,
	reset.Sweeps, registration.Sweeps, alerts.Sweeps, verify.Sweeps, verify.SignupSweeps)

func (s *Server) cleanup() *ops.Cleanup {
	return &ops.Cleanup{Pool: s.Pool, Now: s.Config.Now, Sweeps: sweeps}
}

// CleanUp deletes expired codes, tokens and flows, quiet throttle rows and
// old delivered outbox rows, as the janitor's full sweep does. Safe to call
// on every instance at once.
func (s *Server) CleanUp(ctx context.Context) (ops.Deleted, error) {
	return s.cleanup().Run(ctx, true)
}

// cleanUp is the janitor's share of CleanUp: the indexed, busy tables every
// sweep, the others when full is set.
func (s *Server) cleanUp(ctx context.Context, full bool) {
	deleted, err := s.cleanup().Run(ctx, full)
	if err != nil && ctx.Err() == nil {
		s.Config.Logger.Error("janitor: clean up", "err", err)
	}
	if n := deleted.Total(); n > 0 {
		attrs := []slog.Attr{slog.Int64("rows", n)}
		for table, n := range deleted {
			attrs = append(attrs, slog.Int64(table, n))
		}
		s.Config.Logger.LogAttrs(ctx, slog.LevelInfo, "janitor: deleted expired rows", attrs...)
	}
}

// keyRetention is how long a superseded signing key stays published. ID
// tokens come back as id_token_hint at sign-out for as long as the session
// they were issued in lasts, so it covers the SSO session's lifetime, not
// only the ID token's.
func (s *Server) keyRetention() time.Duration {
	l := s.Config.Lifetimes
	return max(l.IDToken, l.AccessToken, backchannel.TokenLifetime, s.Config.SessionAbsolute)
}

// refreshKeys retires superseded keys and reloads the set, so a key another
// instance rotated in is published and, from its active_at, used here too.
func (s *Server) refreshKeys(ctx context.Context) {
	n, err := s.Keys.Retire(ctx, s.keyRetention()) // reloads on success
	if err != nil {
		if ctx.Err() == nil {
			s.Config.Logger.Error("janitor: retire signing keys", "err", err)
		}
		if err := s.Keys.Reload(ctx); err != nil && ctx.Err() == nil {
			s.Config.Logger.Error("janitor: reload signing keys", "err", err)
		}
		return
	}
	if n > 0 {
		s.Config.Logger.Info("janitor: signing keys retired", "keys", n)
	}
}
