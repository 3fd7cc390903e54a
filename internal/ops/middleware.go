package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// Middleware wraps the instance's ServeMux: it gives every request an id,
// a deadline, metrics and one access-log line, and turns the error
// responses of requests that met an unreachable database into 503.
//
// It must wrap the ServeMux itself (not a handler in front of it): the
// route pattern is read from the request the mux routed.
type Middleware struct {
	Logger  *slog.Logger
	Metrics *Metrics // nil: no metrics
	// Probe tells whether the database answers; nil: no 503 mapping.
	Probe *Probe
	// Timeout is every request's deadline (none when zero). Handlers pass
	// the request context to the database, so it bounds how long a request
	// waits for a connection or an answer when the database hangs.
	Timeout time.Duration
	// TrustedProxies are believed about the client's address: behind them
	// r.RemoteAddr becomes the client's (TrustedProxies.ClientAddr), for
	// every handler and throttle alike.
	TrustedProxies TrustedProxies
	// HSTS, when set, is the Strict-Transport-Security sent on every
	// response, 503s included (HSTSFor).
	HSTS string
}

// HSTSFor is the Strict-Transport-Security policy of a provider at issuer:
// a year, subdomains included (OWASP ASVS 5.0 3.4.1), when the issuer is
// https, whether TLS ends here or at a proxy (browsers heed the header
// only over https); none for an http issuer, which Config.Validate allows
// only on localhost.
func HSTSFor(issuer string) string {
	if strings.HasPrefix(issuer, "https://") {
		return "max-age=31536000; includeSubDomains"
	}
	return ""
}

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

// Wrap returns next (the ServeMux) with the middleware around it.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	logger := m.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		if m.HSTS != "" {
			w.Header().Set("Strict-Transport-Security", m.HSTS)
		}
		ctx := r.Context()
		if m.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, m.Timeout)
			defer cancel()
		}
		// The mux records the matched pattern on this very request, so
		// routed.Pattern is known once it has routed.
		routed := r.WithContext(ctx)
		if len(m.TrustedProxies) > 0 {
			_, port, _ := net.SplitHostPort(r.RemoteAddr)
			routed.RemoteAddr = net.JoinHostPort(m.TrustedProxies.ClientAddr(r), port)
		}
		rec := &recorder{ResponseWriter: w, req: routed, probe: m.Probe, base: w.Header().Clone()}
		next.ServeHTTP(rec, routed)
		if rec.status == 0 {
			rec.status = http.StatusOK // nothing written: net/http sends 200
		}
		elapsed := time.Since(start)

		route := routed.Pattern
		if route == "" {
			route = "unmatched"
		}
		if m.Metrics != nil {
			m.Metrics.observe(route, rec.status, rec.location, elapsed)
			if rec.unavailable {
				m.Metrics.unavailable.Inc()
			}
		}
		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelError
		case quietRoutes[route]:
			level = slog.LevelDebug // probes and scrapes every few seconds
		}
		if !logger.Enabled(ctx, level) {
			return
		}
		// The path is left out on purpose along with the query: the route
		// says what was asked, and paths and queries carry codes, tokens,
		// id_token_hint and user ids.
		attrs := []slog.Attr{
			slog.String("request_id", id),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.Int64("bytes", rec.bytes),
		}
		if rec.unavailable {
			attrs = append(attrs, slog.Bool("database_unavailable", true))
		}
		logger.LogAttrs(context.WithoutCancel(ctx), level, "http request", attrs...)
	})
}

// quietRoutes are logged at debug level unless they fail.
var quietRoutes = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /static/": true,
}

// dbFreeRoutes answer without the database (keys and discovery are served
// from memory), so their errors are never the database's doing.
var dbFreeRoutes = map[string]bool{
	"":                                      true, // unmatched: the mux's own 404 and 405
	"GET /healthz":                          true,
	"GET /readyz":                           true, // renders its own 503
	"GET /metrics":                          true,
	"GET /static/":                          true,
	"GET /.well-known/jwks.json":            true,
	"GET /.well-known/openid-configuration": true,
}

// saneRequestID accepts an incoming id only if it cannot disturb a log
// line or a header: 1–64 characters of A–Z a–z 0–9 and - _ . :
func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder notes what the handler answered. When the answer is an error on
// a route that needs the database and the database does not answer a
// ping, it sends 503 instead, and discards the handler's body: a failed
// sign-in form or fosite's invalid_client would otherwise tell the user
// or the app something untrue about their input.
type recorder struct {
	http.ResponseWriter
	req   *http.Request
	probe *Probe
	// base is the header before the handler ran: a replaced response
	// keeps it (the request id) and drops what the handler added (cookies).
	base http.Header

	status   int
	bytes    int64
	location string
	// replaced: the handler's response was swapped for a 503 and its body
	// is discarded; unavailable: the answer (503 or a rewritten error
	// redirect) is due to the database.
	replaced, unavailable bool
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status != 0 {
		return // superfluous; net/http would only complain
	}
	if code < 200 {
		rec.ResponseWriter.WriteHeader(code) // informational: not the answer
		return
	}
	if rec.probe != nil && !dbFreeRoutes[rec.req.Pattern] {
		switch {
		case code >= 400 && !rec.probe.Up(rec.req.Context(), code >= 500):
			rec.status = http.StatusServiceUnavailable
			rec.replaced, rec.unavailable = true, true
			writeUnavailable(rec.ResponseWriter, rec.base, rec.req)
			return
		case code >= 300 && code < 400:
			// An authorization request that failed is redirected back to
			// the app (fosite's server_error); RFC 6749 §4.1.2.1 has a code
			// for "try again later", which apps may act on.
			if loc, ok := temporarilyUnavailable(rec.Header().Get("Location")); ok && !rec.probe.Up(rec.req.Context(), true) {
				rec.Header().Set("Location", loc)
				rec.unavailable = true
			}
		}
	}
	rec.status = code
	rec.location = rec.Header().Get("Location")
	rec.ResponseWriter.WriteHeader(code)
}

// temporarilyUnavailable rewrites an OAuth error redirect carrying
// error=server_error to error=temporarily_unavailable; ok is false for any
// other Location.
func temporarilyUnavailable(location string) (string, bool) {
	if !strings.Contains(location, "error=server_error") {
		return "", false
	}
	u, err := url.Parse(location)
	if err != nil {
		return "", false
	}
	q := u.Query()
	if q.Get("error") != "server_error" {
		return "", false
	}
	q.Set("error", "temporarily_unavailable")
	q.Set("error_description", "The authorization server is temporarily unable to handle the request.")
	q.Del("error_hint")
	q.Del("error_debug")
	u.RawQuery = q.Encode()
	return u.String(), true
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.replaced {
		return len(b), nil
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Flush lets handlers stream; it commits a 200 if nothing was written.
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if !rec.replaced {
		http.NewResponseController(rec.ResponseWriter).Flush() //nolint:errcheck // best effort, as http.Flusher
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// unavailableRetryAfter is the Retry-After of a 503, in seconds.
const unavailableRetryAfter = "5"

func writeUnavailable(w http.ResponseWriter, base http.Header, r *http.Request) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	for k, v := range base {
		h[k] = v
	}
	h.Set("Retry-After", unavailableRetryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if !jsonRoute(r.Pattern) && !strings.Contains(r.Header.Get("Accept"), "application/json") {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(unavailablePage)) //nolint:errcheck
		return
	}
	// The OAuth error code for this (RFC 6749 §4.1.2.1) and a status that
	// every client library treats as "try again later".
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The service is temporarily unavailable. Try again in a moment."}` + "\n")) //nolint:errcheck
}

// jsonRoute reports the routes that apps and scripts call (OAuth endpoints
// and the admin API): their 503 is JSON, every other route's a page.
func jsonRoute(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	for _, prefix := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/userinfo", "/admin/api/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

const unavailablePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Temporarily unavailable</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main class="card"><h1>Temporarily unavailable</h1>
<p>The sign-in service cannot reach its database right now. Try again in a moment.</p>
</main></body></html>
`

// Probe answers whether the database is reachable and writable, asking it
// at most once per TTL however many requests ask: during an outage every
// failing request asks at once. A read-only answer (a failover left the
// pool on a standby) counts as down, and resets the pool
// (db.CheckWritable).
type Probe struct {
	Pool *pgxpool.Pool
	// Timeout bounds one ping (default 1 s); TTL is how long its answer
	// is reused (default 1 s).
	Timeout, TTL time.Duration

	mu      sync.Mutex
	checked time.Time
	up      bool
}

// Up pings the database unless a recent answer is at hand. ctx may have
// expired already (its deadline may be why the handler failed): the ping
// gets its own.
//
// serverError says the request failed on the server's side, which is what a
// database that has just gone away looks like: then only a recent "down" is
// reused, and a recent "up" is checked again. Otherwise the first second of
// an outage would answer 500s on the strength of a ping made just before
// it. A client error (a wrong password, a bad request) reuses either
// answer, so such requests cannot make the provider ping at their rate.
func (p *Probe) Up(ctx context.Context, serverError bool) bool {
	timeout, ttl := p.Timeout, p.TTL
	if timeout <= 0 {
		timeout = time.Second
	}
	if ttl <= 0 {
		ttl = time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked.IsZero() && time.Since(p.checked) < ttl && !(serverError && p.up) {
		return p.up
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	p.up = db.CheckWritable(ctx, p.Pool) == nil
	p.checked = time.Now()
	return p.up
}
