package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Middleware wraps the instance's ServeMux: it gives every request an id
// (RequestID), a deadline, metrics and one access-log line. It never
// changes what a handler answers: a request the database could not serve
// is answered 503 by the layer that met the error (db.IsUnavailable), which
// notes it (NoteUnavailable) for the metrics and the log.
//
// It must wrap the ServeMux itself, or a handler in front of it that hands
// the mux the very request it was given (reqlimit.Limits.Wrap): the route
// pattern is read from the request the mux routed.
type Middleware struct {
	Logger  *slog.Logger
	Metrics *Metrics // nil: no metrics
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
	// Now is the clock of the untrusted X-Forwarded-For warnings (default
	// time.Now).
	Now func() time.Time

	untrusted untrustedForwarding
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
		info := &request{id: id}
		ctx := context.WithValue(r.Context(), requestKey{}, info)
		if m.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, m.Timeout)
			defer cancel()
		}
		// The mux records the matched pattern on this very request, so
		// routed.Pattern is known once it has routed.
		routed := r.WithContext(ctx)
		now := time.Now
		if m.Now != nil {
			now = m.Now
		}
		m.untrusted.note(ctx, logger, now(), r, m.TrustedProxies)
		if len(m.TrustedProxies) > 0 {
			_, port, _ := net.SplitHostPort(r.RemoteAddr)
			routed.RemoteAddr = net.JoinHostPort(m.TrustedProxies.ClientAddr(r), port)
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, routed)
		if rec.status == 0 {
			rec.status = http.StatusOK // nothing written: net/http sends 200
		}
		elapsed := time.Since(start)

		route := routed.Pattern
		if route == "" {
			route = "unmatched"
		}
		unavailable := info.unavailable.Load()
		if m.Metrics != nil {
			m.Metrics.observe(route, rec.status, elapsed)
			if unavailable {
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
		if unavailable {
			attrs = append(attrs, slog.Bool("database_unavailable", true))
		}
		logger.LogAttrs(context.WithoutCancel(ctx), level, "http request", attrs...)
	})
}

// quietRoutes are logged at debug level unless they fail.
var quietRoutes = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /static/": true,
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

// request is what the middleware keeps about a request in its context.
type request struct {
	id          string
	unavailable atomic.Bool
}

type requestKey struct{}

// RequestID is the id of the request ctx belongs to ("" outside one), the
// one its access-log line and X-Request-Id header carry: what a person
// quotes from an error page, and what an internal error is logged with.
func RequestID(ctx context.Context) string {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		return r.id
	}
	return ""
}

// NoteUnavailable records that the request ctx belongs to was answered 503
// (or temporarily_unavailable) because the database could not serve it:
// counted in idp_http_db_unavailable_total and marked in its log line.
func NoteUnavailable(ctx context.Context) {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		r.unavailable.Store(true)
	}
}

// recorder notes what the handler answered.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status != 0 {
		return // superfluous; net/http would only complain
	}
	if code >= 200 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
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
	http.NewResponseController(rec.ResponseWriter).Flush() //nolint:errcheck // best effort, as http.Flusher
}

// Unwrap gives http.ResponseController the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// UnavailableRetryAfter is the Retry-After of a 503, in seconds.
const UnavailableRetryAfter = "5"
