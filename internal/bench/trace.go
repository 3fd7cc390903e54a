package bench

import (
	"context"
	"net/http"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// requestDB counts what one request asked of the database.
type requestDB struct {
	roundTrips atomic.Int64 // statements sent alone, and batches (one trip each)
	statements atomic.Int64 // every statement, batched or not
}

type requestDBKey struct{}

// dbTracer is the instance pool's pgx tracer. It counts against the
// request in the query's context; everything else (the logout worker, the
// janitor, seeding) goes to background. BEGIN, COMMIT and ROLLBACK
// go through Exec and count like any statement; a batch is one round trip
// however many statements it carries. The one-off round trip that prepares
// a statement on a connection's first use of it is not counted: after
// warm-up it does not happen.
type dbTracer struct {
	background *atomic.Int64
}

var (
	_ pgx.QueryTracer = dbTracer{}
	_ pgx.BatchTracer = dbTracer{}
)

func counterFrom(ctx context.Context) *requestDB {
	c, _ := ctx.Value(requestDBKey{}).(*requestDB)
	return c
}

func (t dbTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if c := counterFrom(ctx); c != nil {
		c.roundTrips.Add(1)
		c.statements.Add(1)
	} else {
		t.background.Add(1)
	}
	return ctx
}

func (dbTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t dbTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if c := counterFrom(ctx); c != nil {
		c.roundTrips.Add(1)
	} else {
		t.background.Add(1)
	}
	return ctx
}

func (dbTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchQueryData) {
	if c := counterFrom(ctx); c != nil {
		c.statements.Add(1)
	}
}

func (dbTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// RoundTrips is what the requests to one endpoint cost the database during
// one phase of the run.
type RoundTrips struct {
	Phase      string  `json:"phase"`
	Request    string  `json:"request"` // "POST /oauth2/token"
	Requests   int64   `json:"requests"`
	Avg        float64 `json:"round_trips_avg"`
	Min        int64   `json:"round_trips_min"`
	Max        int64   `json:"round_trips_max"`
	Statements float64 `json:"statements_avg"`
	// ServerTime is the mean time in the provider's handler.
	ServerTime time.Duration `json:"server_time_avg_ns"`
}

type meterKey struct{ phase, request string }

type meterAgg struct {
	n, sum, min, max, stmts int64
	elapsed                 time.Duration
}

// meter wraps the instance's handler: while a phase is set, each request
// gets a counter in its context, and its count is filed under the phase
// and the request's method and path.
type meter struct {
	phase atomic.Pointer[string]
	mu    sync.Mutex
	agg   map[meterKey]*meterAgg
}

func (m *meter) setPhase(p string) {
	if p == "" {
		m.phase.Store(nil)
		return
	}
	m.phase.Store(&p)
}

func (m *meter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := m.phase.Load()
		if p == nil {
			h.ServeHTTP(w, r)
			return
		}
		c := &requestDB{}
		start := time.Now()
		// The labels let a CPU profile be cut to one scenario and level:
		// go tool pprof -tagfocus phase=silent_sso -tagfocus workers=16.
		name, workers, _ := strings.Cut(*p, "@")
		name, _, _ = strings.Cut(name, "#") // a soak's window
		pprof.Do(r.Context(), pprof.Labels("phase", name, "workers", workers), func(ctx context.Context) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(ctx, requestDBKey{}, c)))
		})
		el := time.Since(start)
		m.record(meterKey{*p, r.Method + " " + routeOf(r.URL.Path)}, c.roundTrips.Load(), c.statements.Load(), el)
	})
}

func (m *meter) record(k meterKey, trips, stmts int64, el time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.agg == nil {
		m.agg = map[meterKey]*meterAgg{}
	}
	a := m.agg[k]
	if a == nil {
		a = &meterAgg{min: trips, max: trips}
		m.agg[k] = a
	}
	a.n++
	a.sum += trips
	a.stmts += stmts
	a.elapsed += el
	a.min = min(a.min, trips)
	a.max = max(a.max, trips)
}

// report lists the counts of phase, by request.
func (m *meter) report(phase string) []RoundTrips {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []RoundTrips
	for k, a := range m.agg {
		if k.phase != phase {
			continue
		}
		out = append(out, RoundTrips{Phase: k.phase, Request: k.request, Requests: a.n,
			Avg: float64(a.sum) / float64(a.n), Min: a.min, Max: a.max, Statements: float64(a.stmts) / float64(a.n),
			ServerTime: a.elapsed / time.Duration(a.n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Request < out[j].Request })
	return out
}

// routeOf names a path by its route: ids (UUIDs, numbers) become {id}, so
// "DELETE /admin/api/users/{id}/sessions" is one row, not one per user.
func routeOf(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if p != "" && (isUUID(p) || strings.Trim(p, "0123456789") == "") {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}
