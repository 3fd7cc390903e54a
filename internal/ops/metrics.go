// Package ops owns what operators see and rely on: the Prometheus metrics
// of one instance, the request middleware (request id, access log, request
// deadline), the liveness and readiness probes, and the clean-up queries
// the janitor runs.
//
// It knows the schema only as far as counting and deleting rows; it never
// interprets a token, code or password, and never logs a query string or a
// body.
package ops

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one instance's Prometheus registry. It is its own registry,
// not the global one, so two instances in one process (tests) never share
// or collide.
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	loginSteps  *prometheus.CounterVec
	unavailable prometheus.Counter
	deliveries  *prometheus.CounterVec
	notified    prometheus.Histogram
}

// NewMetrics registers the request metrics, the sign-in counters, the Go
// runtime and process collectors, and a collector that reads the database
// (sessions, logout outbox, pool) at scrape time. now is the clock the
// database gauges compare with (time.Now when nil).
func NewMetrics(pool *pgxpool.Pool, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idp_http_requests_total",
			Help: "HTTP requests by route pattern (\"unmatched\" for none) and status class (2xx, 4xx …).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idp_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		loginSteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idp_login_attempts_total",
			Help: "Sign-in form submissions by step (password, totp, enroll, new_password, passkey, passkey_factor, " +
				"passkey_enroll, forgot, reset) and outcome (signed_in, " +
				"next_step, wrong_password, wrong_code, throttled, rejected, invalid, error), as the sign-in reports them.",
		}, []string{"step", "outcome"}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idp_http_db_unavailable_total",
			Help: "Requests answered 503 (or, for authorization requests, error=temporarily_unavailable) because the database could not serve them.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idp_logout_deliveries_total",
			Help: "Back-channel logout delivery attempts made by this instance, by app and outcome " +
				"(delivered; retry: unreachable, 5xx or 429; failed: refused by the app; abandoned: given up).",
		}, []string{"client_id", "outcome"}),
		notified: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "idp_logout_delivery_delay_seconds",
			Help: "Time from a session's end to the app acknowledging its logout token, for delivered notifications: " +
				"how long the app went on treating the session as alive.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.loginSteps, m.unavailable, m.deliveries, m.notified,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newDBCollector(pool, now))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Registry:            m.Registry, // counts its own scrape errors
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 2,
		Timeout:             10 * time.Second,
	})
}

// ObserveLogoutDelivery records one back-channel logout delivery attempt
// (backchannel.Worker.Observe): its outcome and, once delivered, how long
// after the session's end.
func (m *Metrics) ObserveLogoutDelivery(clientID, outcome string, sinceQueued time.Duration) {
	m.deliveries.WithLabelValues(clientID, outcome).Inc()
	if outcome == "delivered" {
		m.notified.Observe(sinceQueued.Seconds())
	}
}

// observe records one served request.
func (m *Metrics) observe(route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, statusClass(status)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

// ObserveSignIn counts one sign-in form submission by its step and outcome,
// as the sign-in itself reports them (login.Handler.Observe).
func (m *Metrics) ObserveSignIn(step, outcome string) {
	m.loginSteps.WithLabelValues(step, outcome).Inc()
}

func statusClass(status int) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	case status >= 300:
		return "3xx"
	case status >= 200:
		return "2xx"
	}
	return "1xx"
}

// scrapeTimeout bounds the database queries of one scrape, so a database
// outage makes a scrape report idp_db_up 0 rather than hang.
const scrapeTimeout = 3 * time.Second

// dbCollector reads gauges from the database at scrape time, with one
// round trip of small queries that use the schema's indexes, and the pool's
// own statistics.
type dbCollector struct {
	pool *pgxpool.Pool
	now  func() time.Time

	up, sessions, pending, oldest, outcomes                 *prometheus.Desc
	acquired, idle, total, max, constructing                *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires, canceled, news *prometheus.Desc
}

func newDBCollector(pool *pgxpool.Pool, now func() time.Time) *dbCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &dbCollector{
		pool: pool, now: now,
		up:       d("idp_db_up", "1 if the scrape's database queries succeeded, else 0."),
		sessions: d("idp_sso_sessions_active", "SSO sessions neither revoked nor expired."),
		pending:  d("idp_logout_outbox_pending", "Back-channel logout notifications not yet delivered, failed or abandoned."),
		oldest:   d("idp_logout_outbox_oldest_pending_seconds", "Age of the oldest pending back-channel logout notification (0 when none)."),
		outcomes: d("idp_logout_outbox_rows", "Back-channel logout notifications in the outbox by final state "+
			"(delivered rows are deleted after a retention period; failed and abandoned ones are kept for administrators).", "state"),
		acquired:       d("idp_db_pool_acquired_conns", "Connections currently in use."),
		idle:           d("idp_db_pool_idle_conns", "Idle connections in the pool."),
		total:          d("idp_db_pool_total_conns", "Connections in the pool (acquired, idle and being opened)."),
		max:            d("idp_db_pool_max_conns", "Maximum size of the pool."),
		constructing:   d("idp_db_pool_constructing_conns", "Connections being opened."),
		acquires:       d("idp_db_pool_acquire_total", "Successful connection acquisitions."),
		acquireSeconds: d("idp_db_pool_acquire_duration_seconds_total", "Total time spent acquiring connections."),
		emptyAcquires:  d("idp_db_pool_empty_acquire_total", "Acquisitions that had to wait for a connection."),
		canceled:       d("idp_db_pool_canceled_acquire_total", "Acquisitions abandoned by their context."),
		news:           d("idp_db_pool_new_conns_total", "Connections opened."),
	}
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.sessions, c.pending, c.oldest, c.outcomes,
		c.acquired, c.idle, c.total, c.max, c.constructing,
		c.acquires, c.acquireSeconds, c.emptyAcquires, c.canceled, c.news} {
		ch <- d
	}
}

// Scrape-time queries. Each is chosen for an index: the first matches
// sso_sessions_expiry_idx (partial on revoked_at IS NULL, on the same
// expression), the second outbox_due_idx (partial on exactly that
// predicate, led by the kind). The third reads the outbox's logout rows, which the janitor keeps to
// the delivered rows of the retention period plus the failed and abandoned
// ones.
const (
	activeSessionsQuery = `SELECT count(*) FROM sso_sessions
		WHERE revoked_at IS NULL AND least(idle_expires_at, absolute_expires_at) > $1`
	pendingOutboxQuery = `SELECT count(*), min(created_at) FROM outbox
		WHERE kind = 'logout' AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`
	outboxOutcomesQuery = `SELECT
		count(*) FILTER (WHERE delivered_at IS NOT NULL),
		count(*) FILTER (WHERE failed_at IS NOT NULL),
		count(*) FILTER (WHERE abandoned_at IS NOT NULL)
		FROM outbox WHERE kind = 'logout'`
)

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	st := c.pool.Stat()
	gauge(c.acquired, float64(st.AcquiredConns()))
	gauge(c.idle, float64(st.IdleConns()))
	gauge(c.total, float64(st.TotalConns()))
	gauge(c.max, float64(st.MaxConns()))
	gauge(c.constructing, float64(st.ConstructingConns()))
	counter(c.acquires, float64(st.AcquireCount()))
	counter(c.acquireSeconds, st.AcquireDuration().Seconds())
	counter(c.emptyAcquires, float64(st.EmptyAcquireCount()))
	counter(c.canceled, float64(st.CanceledAcquireCount()))
	counter(c.news, float64(st.NewConnsCount()))

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	now := c.now()
	var (
		sessions, pending            int64
		oldestPending                *time.Time
		delivered, failed, abandoned int64
	)
	b := &pgx.Batch{}
	b.Queue(activeSessionsQuery, now).QueryRow(func(r pgx.Row) error { return r.Scan(&sessions) })
	b.Queue(pendingOutboxQuery).QueryRow(func(r pgx.Row) error { return r.Scan(&pending, &oldestPending) })
	b.Queue(outboxOutcomesQuery).QueryRow(func(r pgx.Row) error { return r.Scan(&delivered, &failed, &abandoned) })
	if err := c.pool.SendBatch(ctx, b).Close(); err != nil {
		// Absent series would read as "no data"; idp_db_up says why.
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	gauge(c.sessions, float64(sessions))
	gauge(c.pending, float64(pending))
	age := 0.0
	if oldestPending != nil {
		age = max(now.Sub(*oldestPending).Seconds(), 0)
	}
	gauge(c.oldest, age)
	gauge(c.outcomes, float64(delivered), "delivered")
	gauge(c.outcomes, float64(failed), "failed")
	gauge(c.outcomes, float64(abandoned), "abandoned")
}
