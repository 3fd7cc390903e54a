package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// lockedBuffer is a log sink that tests read while the server writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLogs makes the instance log, at debug level, into the returned
// buffer.
func captureLogs(buf *lockedBuffer) func(*server.Config) {
	return func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// scrape fetches /metrics.
func scrape(t *testing.T, h *servertest.Harness) string {
	t.Helper()
	resp, err := http.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", resp.StatusCode, body)
	}
	return string(body)
}

// metric returns the value of one series, written as the exposition
// format writes it (label names sorted): `name{a="1",b="2"}`.
func metric(t *testing.T, body, series string) float64 {
	t.Helper()
	v, ok := lookupMetric(t, body, series)
	if !ok {
		t.Fatalf("no series %s in /metrics", series)
	}
	return v
}

// lookupMetric is metric for a series that may not exist yet.
func lookupMetric(t *testing.T, body, series string) (float64, bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("series %s: value %q: %v", series, v, err)
			}
			return f, true
		}
	}
	return 0, false
}

func TestOps_Metrics(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.RequireMFA = true })
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app") // fetches discovery

	// A wrong password, the right one, then enrollment: three sign-in steps.
	br := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := br.Get(a.URL)
	p = br.Post(h.Issuer+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "email": {"alice@example.com"}, "password": {"wrong password"}})
	if p.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", p.Status)
	}
	p = br.Post(h.Issuer+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "email": {"alice@example.com"}, "password": {password}})
	if p.URL.Path != "/login/enroll" {
		t.Fatalf("after the password: %s", p.URL)
	}
	wrong := br.Post(h.Issuer+"/login/enroll", url.Values{"csrf_token": {p.CSRF(t)}, "code": {"000000"}})
	if wrong.Status != http.StatusUnauthorized && wrong.Status != http.StatusBadRequest {
		t.Fatalf("wrong enrollment code: %d", wrong.Status)
	}
	_, _, p = enroll(t, h, br, p, time.Now())
	app.Exchange(t, app.Code(t, p, a), a) // POST /oauth2/token
	servertest.ReadPage(t, must(http.Get(h.URL+"/no-such-page")))

	// Logout notifications in each state; the worker must not touch them.
	h.StopBackground()
	if _, err := h.DB.Pool.Exec(h.Ctx, `
		INSERT INTO outbox (kind, sid, subject, client_id, uri, created_at, delivered_at, failed_at, abandoned_at) VALUES
		('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/bc', now() - interval '2 minutes', NULL, NULL, NULL),
		('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/bc', now(), now(), NULL, NULL),
		('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/bc', now(), NULL, now(), NULL),
		('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/bc', now(), NULL, NULL, now())`); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, h)
	atLeast := map[string]float64{
		`idp_http_requests_total{code="2xx",route="POST /oauth2/token"}`:                    1,
		`idp_http_requests_total{code="2xx",route="GET /.well-known/openid-configuration"}`: 1,
		`idp_http_requests_total{code="4xx",route="unmatched"}`:                             1,
		`idp_http_request_duration_seconds_count{route="POST /oauth2/token"}`:               1,
		`idp_http_request_duration_seconds_bucket{route="POST /oauth2/token",le="+Inf"}`:    1,
		`idp_logout_outbox_oldest_pending_seconds`:                                          100,
		`idp_db_pool_total_conns`:   1,
		`idp_db_pool_max_conns`:     1,
		`idp_db_pool_acquire_total`: 1,
		`go_goroutines`:             1,
	}
	for series, min := range atLeast {
		if v := metric(t, body, series); v < min {
			t.Errorf("%s = %v, want at least %v", series, v, min)
		}
	}
	exactly := map[string]float64{
		`idp_login_attempts_total{outcome="wrong_password",step="password"}`: 1,
		`idp_login_attempts_total{outcome="next_step",step="password"}`:      1,
		`idp_login_attempts_total{outcome="signed_in",step="enroll"}`:        1,
		`idp_db_up`:                                 1,
		`idp_sso_sessions_active`:                   1,
		`idp_logout_outbox_pending`:                 1,
		`idp_logout_outbox_rows{state="delivered"}`: 1,
		`idp_logout_outbox_rows{state="failed"}`:    1,
		`idp_logout_outbox_rows{state="abandoned"}`: 1,
		`idp_http_db_unavailable_total`:             0,
	}
	for series, want := range exactly {
		if v := metric(t, body, series); v != want {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}
	wrongCode := `idp_login_attempts_total{outcome="wrong_code",step="enroll"}`
	if wrong.Status == http.StatusBadRequest {
		wrongCode = `idp_login_attempts_total{outcome="invalid",step="enroll"}`
	}
	if v := metric(t, body, wrongCode); v != 1 {
		t.Errorf("%s = %v, want 1", wrongCode, v)
	}
}

// TestOps_MetricsToken: with a scrape token set, /metrics answers only a
// request bearing it (any case of the scheme), refuses the rest with a
// challenge, and counts the refusals; the probes stay open.
func TestOps_MetricsToken(t *testing.T) {
	const token = "scrape-token-0123456789abcdefghijklmnop"
	h := servertest.New(t, func(c *server.Config) { c.MetricsToken = token })
	get := func(authorization string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.URL+"/metrics", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}

	for _, c := range []struct{ name, authorization, challenge string }{
		{"no token", "", `Bearer realm="metrics"`},
		{"another scheme", "Basic " + token, `Bearer realm="metrics"`},
		{"empty token", "Bearer ", `Bearer realm="metrics"`},
		{"wrong last character", "Bearer " + token[:len(token)-1] + "q", `Bearer realm="metrics", error="invalid_token"`},
		{"a prefix", "Bearer " + token[:8], `Bearer realm="metrics", error="invalid_token"`},
		{"token and more", "Bearer " + token + "x", `Bearer realm="metrics", error="invalid_token"`},
	} {
		code, header, body := get(c.authorization)
		if code != http.StatusUnauthorized || header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d, WWW-Authenticate %q; want 401, %q", c.name, code, header.Get("WWW-Authenticate"), c.challenge)
		}
		if strings.Contains(body, "idp_") {
			t.Errorf("%s: the refusal carries metrics:\n%.300s", c.name, body)
		}
	}

	for _, scheme := range []string{"Bearer", "bearer"} {
		code, _, body := get(scheme + " " + token)
		if code != http.StatusOK || !strings.Contains(body, "\nidp_db_up 1\n") {
			t.Fatalf("%s token: %d\n%.300s", scheme, code, body)
		}
		if v := metric(t, body, `idp_http_requests_total{code="4xx",route="GET /metrics"}`); v != 6 {
			t.Errorf("refused scrapes counted: %v, want 6", v)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _, _ := probe(t, h.URL+p); st != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", p, st)
		}
	}
}

// TestOps_HSTS: an instance whose issuer is https sends its
// Strict-Transport-Security policy on pages and API answers alike (TLS may
// end at a proxy in front of it); the http test harness's sends none.
func TestOps_HSTS(t *testing.T) {
	d := dbtest.New(t)
	s, err := server.New(context.Background(), server.Config{Issuer: "https://login.example.com",
		Secret: strings.Repeat("s", 32), Logger: slog.New(slog.DiscardHandler)}, d.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/login", "/healthz"} {
		rec := httptest.NewRecorder()
		s.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Header().Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
			t.Errorf("GET %s (%d): Strict-Transport-Security %q", path, rec.Code, got)
		}
	}
	h := servertest.New(t)
	resp := must(http.Get(h.URL + "/.well-known/openid-configuration"))
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("http issuer: Strict-Transport-Security %q, want none", got)
	}
}

// TestOps_DeliveryMetrics: every back-channel delivery attempt is counted by
// app and outcome, and a delivered one's delay since the session ended is
// observed.
func TestOps_DeliveryMetrics(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	flaky := h.NewReceiver("flaky")
	flaky.FailNext(1) // one 503, then delivered
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unknown session", http.StatusBadRequest)
	}))
	t.Cleanup(refusing.Close)
	appA := h.NewRP("flaky", func(c *clients.Client) { c.BackchannelLogoutURI = flaky.URL })
	appB := h.NewRP("refusing", func(c *clients.Client) { c.BackchannelLogoutURI = refusing.URL })
	br := servertest.NewBrowser(t)
	in := signInTo(t, br, appA, flaky, "alice@example.com")
	signInTo(t, br, appB, nil, "alice@example.com")

	ended := time.Now()
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: []string{in.sid}, Reason: sessions.ReasonLogout}); err != nil {
		t.Fatal(err)
	}
	flaky.WaitFor(t, 1)
	want := map[string]float64{
		`idp_logout_deliveries_total{client_id="flaky",outcome="retry"}`:     1,
		`idp_logout_deliveries_total{client_id="flaky",outcome="delivered"}`: 1,
		`idp_logout_deliveries_total{client_id="refusing",outcome="failed"}`: 1,
		`idp_logout_delivery_delay_seconds_count`:                            1,
		`idp_logout_delivery_delay_seconds_bucket{le="0.01"}`:                0,
	}
	// The worker counts an attempt just after recording it.
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body = scrape(t, h)
		v, ok := lookupMetric(t, body, `idp_logout_deliveries_total{client_id="flaky",outcome="delivered"}`)
		if ok && v >= 1 || time.Now().After(deadline) {
			break
		}
	}
	for series, w := range want {
		if v := metric(t, body, series); v != w {
			t.Errorf("%s = %v, want %v", series, v, w)
		}
	}
	// The delay is measured from the revocation: positive, and no longer
	// than the test has waited since.
	sum := metric(t, body, `idp_logout_delivery_delay_seconds_sum`)
	if sum <= 0 || sum > time.Since(ended).Seconds() {
		t.Errorf("delivery delay %v s, want within (0, %v]", sum, time.Since(ended).Seconds())
	}
}

func must(resp *http.Response, err error) *http.Response {
	if err != nil {
		panic(err)
	}
	return resp
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestOps_RequestLog(t *testing.T) {
	logs := &lockedBuffer{}
	h := servertest.New(t, captureLogs(logs))
	app := h.NewRP("app")

	get := func(t *testing.T, path, requestID string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.URL+path, nil)
		if requestID != "" {
			req.Header.Set("X-Request-Id", requestID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("incoming id honoured, route logged, query not", func(t *testing.T) {
		resp := get(t, "/.well-known/jwks.json?code=SECRET-CODE&id_token_hint=SECRET-HINT", "req-abc.123")
		if got := resp.Header.Get("X-Request-Id"); got != "req-abc.123" {
			t.Fatalf("X-Request-Id = %q, want the incoming one", got)
		}
		line := logLine(t, logs, "request_id=req-abc.123")
		for _, want := range []string{`route="GET /.well-known/jwks.json"`, "method=GET", "status=200", "duration_ms="} {
			if !strings.Contains(line, want) {
				t.Errorf("log line lacks %s: %s", want, line)
			}
		}
	})
	t.Run("form bodies are not logged", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/token",
			strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code": {"SECRET-BODY-CODE"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Request-Id", "req-token")
		req.SetBasicAuth(app.ID, app.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		line := logLine(t, logs, "request_id=req-token")
		if !strings.Contains(line, `route="POST /oauth2/token"`) || !strings.Contains(line, "status=400") {
			t.Errorf("log line: %s", line)
		}
	})
	t.Run("an authorization request's query is not logged", func(t *testing.T) {
		a := app.AuthURL()
		get(t, strings.TrimPrefix(a.URL, h.Issuer)+"&login_hint=SECRET-HINT-2", "req-auth")
		line := logLine(t, logs, "request_id=req-auth")
		if !strings.Contains(line, `route="GET /oauth2/auth"`) {
			t.Errorf("log line: %s", line)
		}
		if strings.Contains(logs.String(), a.State) || strings.Contains(logs.String(), a.Nonce) {
			t.Error("the log holds the authorization request's state or nonce")
		}
	})
	t.Run("unsafe incoming id replaced", func(t *testing.T) {
		for _, bad := range []string{"has spaces in it", strings.Repeat("a", 65), `quote"d`} {
			got := get(t, "/healthz", bad).Header.Get("X-Request-Id")
			if !hexID.MatchString(got) {
				t.Errorf("incoming %q: X-Request-Id = %q, want a generated id", bad, got)
			}
		}
	})
	t.Run("generated when absent", func(t *testing.T) {
		a := get(t, "/healthz", "").Header.Get("X-Request-Id")
		b := get(t, "/healthz", "").Header.Get("X-Request-Id")
		if !hexID.MatchString(a) || a == b {
			t.Errorf("ids %q, %q: want two different generated ids", a, b)
		}
	})
	t.Run("no secret anywhere in the log", func(t *testing.T) {
		if strings.Contains(logs.String(), "SECRET") {
			t.Errorf("the log holds a query or body value:\n%s", logs.String())
		}
	})
}

// logLine waits briefly for the access-log line containing needle (it is
// written after the response) and returns it.
func logLine(t *testing.T, logs *lockedBuffer, needle string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, needle) && strings.Contains(l, `msg="http request"`) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access-log line with %s in:\n%s", needle, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probe is one GET of a probe endpoint.
func probe(t *testing.T, u string) (int, map[string]string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: body is not JSON: %v", u, err)
	}
	return resp.StatusCode, body, time.Since(start)
}

func TestOps_Health(t *testing.T) {
	h := servertest.New(t)
	if st, body, _ := probe(t, h.URL+"/healthz"); st != http.StatusOK || body["status"] != "ok" {
		t.Errorf("/healthz: %d %v", st, body)
	}
	if st, body, _ := probe(t, h.URL+"/readyz"); st != http.StatusOK || body["database"] != "ok" || body["migrations"] != "ok" {
		t.Errorf("/readyz: %d %v", st, body)
	}
	t.Run("pending migration", func(t *testing.T) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `DELETE FROM schema_migrations`); err != nil {
			t.Fatal(err)
		}
		st, body, _ := probe(t, h.URL+"/readyz")
		if st != http.StatusServiceUnavailable || !strings.HasSuffix(body["migrations"], "pending") {
			t.Errorf("/readyz with a migration pending: %d %v", st, body)
		}
		if st, _, _ := probe(t, h.URL+"/healthz"); st != http.StatusOK {
			t.Errorf("/healthz: %d, want 200 whatever the database", st)
		}
	})
}

// pgProxy forwards TCP connections to PostgreSQL until cut: then it drops
// every open connection and closes each new one at once, as a database
// that went away does, until restored.
type pgProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

// track registers c unless the proxy is down, in which case it closes c.
func (p *pgProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *pgProxy) pipe(client net.Conn) {
	if !p.track(client) {
		return
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(upstream) {
		client.Close()
		return
	}
	go func() { io.Copy(upstream, client); upstream.Close(); client.Close() }()
	io.Copy(client, upstream)
	client.Close()
	upstream.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, upstream)
	p.mu.Unlock()
}

func (p *pgProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestOps_DatabaseOutage runs an instance whose pool reaches PostgreSQL
// through a proxy, cuts it mid-traffic, and restores it.
func TestOps_DatabaseOutage(t *testing.T) {
	d := dbtest.New(t)
	u, err := url.Parse(d.URL)
	if err != nil || u.Host == "" || u.Query().Get("host") != "" {
		t.Skipf("IDP_TEST_DATABASE_URL does not name a TCP host:port to proxy")
	}
	proxy := startProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	h := servertest.NewInstance(t, &dbtest.DB{URL: u.String(), Pool: d.Pool})
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")

	// token makes a client credentials grant and reports its status (0 if
	// the request failed) and how long it took.
	token := func() (int, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/token",
			strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(app.ID, app.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, time.Since(start)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		return resp.StatusCode, time.Since(start)
	}
	const fast = 5 * time.Second

	// Traffic before the cut, and a sign-in left half done across it.
	if st, _ := token(); st != http.StatusOK {
		t.Fatalf("token before the cut: %d", st)
	}
	alice := servertest.NewBrowser(t)
	a := app.AuthURL()
	form := alice.Get(a.URL)
	if !form.IsLoginForm() {
		t.Fatalf("no login form before the cut: %s", form.URL)
	}
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	traffic.Go(func() { // keeps the pool busy while the cut happens
		for {
			select {
			case <-stop:
				return
			default:
				token()
			}
		}
	})

	proxy.Cut()
	t.Run("during the cut", func(t *testing.T) {
		for i := range 3 {
			if st, took := token(); st != http.StatusServiceUnavailable || took > fast {
				t.Errorf("token request %d: %d after %s, want 503 within %s", i, st, took, fast)
			}
		}
		if st, body, took := probe(t, h.URL+"/readyz"); st != http.StatusServiceUnavailable || body["database"] != "unreachable" || took > fast {
			t.Errorf("/readyz: %d %v after %s", st, body, took)
		}
		start := time.Now()
		p := alice.Post(h.Issuer+"/login", url.Values{"csrf_token": {form.CSRF(t)}, "email": {"alice@example.com"}, "password": {password}})
		if took := time.Since(start); p.Status != http.StatusServiceUnavailable || took > fast {
			t.Errorf("POST /login: %d after %s, want 503 within %s", p.Status, took, fast)
		}
		if !strings.Contains(p.Body, "Temporarily unavailable") || p.Header.Get("Set-Cookie") != "" {
			t.Errorf("POST /login: the 503 page is not the outage page or sets a cookie:\n%s", p.Body)
		}
		// The app is told to try again later (its client is cached, so the
		// request is valid; starting the sign-in is what fails).
		start = time.Now()
		p = servertest.NewBrowser(t).Get(app.AuthURL().URL)
		if took := time.Since(start); p.URL.Path != "/callback" || p.URL.Query().Get("error") != "temporarily_unavailable" || took > fast {
			t.Errorf("GET /oauth2/auth: ended at %s after %s, want the app told temporarily_unavailable within %s", p.URL, took, fast)
		}
		// What needs no database keeps working.
		for _, path := range []string{"/healthz", "/.well-known/jwks.json", "/.well-known/openid-configuration"} {
			if resp := must(http.Get(h.URL + path)); resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %d, want 200 from memory", path, resp.StatusCode)
			} else {
				resp.Body.Close()
			}
		}
		body := scrape(t, h)
		if v := metric(t, body, "idp_db_up"); v != 0 {
			t.Errorf("idp_db_up = %v during the cut", v)
		}
		if v := metric(t, body, "idp_http_db_unavailable_total"); v < 3 {
			t.Errorf("idp_http_db_unavailable_total = %v, want at least 3", v)
		}
	})
	close(stop)
	traffic.Wait()

	proxy.Restore()
	t.Run("after the restore", func(t *testing.T) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, _ := token()
			if st == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("token requests still fail %s after the restore: %d", 15*time.Second, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st, body, _ := probe(t, h.URL+"/readyz"); st != http.StatusOK {
			t.Errorf("/readyz after the restore: %d %v", st, body)
		}
		// The sign-in begun before the cut completes.
		p := alice.Post(h.Issuer+"/login", url.Values{"csrf_token": {form.CSRF(t)}, "email": {"alice@example.com"}, "password": {password}})
		app.Exchange(t, app.Code(t, p, a), a)
	})
}

// TestOps_ReadOnlyDatabase: a failover leaves the instance's database
// read-only for a while (its connections dropped, new ones landing on a
// standby): requests get 503 and /readyz says read-only, and once the
// database takes writes again the instance recovers by itself.
func TestOps_ReadOnlyDatabase(t *testing.T) {
	h := servertest.New(t)
	h.StopBackground()
	app := h.NewRP("app")
	u, err := url.Parse(h.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	// The test's own connection, writable whatever the database's default.
	admin, err := pgx.Connect(h.Ctx, h.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(h.Ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	token := func() int {
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/token",
			strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(app.ID, app.Secret)
		resp := must(http.DefaultClient.Do(req))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := token(); st != http.StatusOK {
		t.Fatalf("token before the failover: %d", st)
	}

	exec(`ALTER DATABASE ` + dbName + ` SET default_transaction_read_only = on`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	t.Run("read-only", func(t *testing.T) {
		for i := range 3 {
			if st := token(); st != http.StatusServiceUnavailable {
				t.Errorf("token request %d: %d, want 503", i, st)
			}
		}
		if st, body, _ := probe(t, h.URL+"/readyz"); st != http.StatusServiceUnavailable || body["database"] != "read-only" {
			t.Errorf("/readyz: %d %v, want 503 and database read-only", st, body)
		}
	})

	// Writable again, with nothing else done: no connection is dropped.
	exec(`ALTER DATABASE ` + dbName + ` RESET default_transaction_read_only`)
	t.Run("writable again", func(t *testing.T) {
		if st := token(); st != http.StatusOK {
			t.Errorf("token after the database takes writes again: %d, want 200 at once", st)
		}
		if st, body, _ := probe(t, h.URL+"/readyz"); st != http.StatusOK {
			t.Errorf("/readyz: %d %v", st, body)
		}
	})
}

// TestOps_JanitorReadOnlyPool: an instance whose connections have turned
// read-only, and to which nobody sends a request, finds out at its next
// sweep, skips it with a warning rather than a round of errors, and lets
// go of those connections.
func TestOps_JanitorReadOnlyPool(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	var readOnly atomic.Bool
	pool := dbtest.DemotablePool(t, d.URL, &readOnly)
	var logs lockedBuffer
	s, err := server.New(ctx, server.Config{Issuer: "http://localhost:8080", Secret: strings.Repeat("s", 32),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, pool)
	if err != nil {
		t.Fatal(err)
	}
	readOnly.Store(true)
	pool.Reset()
	var pid uint32
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }() // the janitor sweeps at once
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "janitor: database not writable; sweep skipped"); {
		if time.Now().After(deadline) {
			t.Fatalf("no warning from the janitor in 10 s; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	readOnly.Store(false)
	stop()
	<-done
	if strings.Contains(logs.String(), "level=ERROR msg=\"janitor") {
		t.Errorf("the janitor swept a read-only database:\n%s", logs.String())
	}
	var now uint32
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if now == pid {
		t.Error("the read-only connection is still in the pool")
	}
}

// Rows for the clean-up tests, each labelled so the test can tell which
// survived.
func insertSweepRows(t *testing.T, h *servertest.Harness) {
	t.Helper()
	tokenTables := []string{"oauth_authorize_codes", "oauth_access_tokens", "oauth_refresh_tokens"}
	for _, table := range tokenTables {
		_, err := h.DB.Pool.Exec(h.Ctx, `INSERT INTO `+table+`
			(signature_hash, request_id, client_id, requested_at, expires_at, request)
			SELECT uuid_send(gen_random_uuid()), label, 'app', now(), expires_at, '{}'
			FROM (VALUES ('expired', now() - interval '2 hours'), ('in-grace', now() - interval '10 minutes'),
			             ('live', now() + interval '1 hour'), ('no-expiry', NULL::timestamptz)) AS v (label, expires_at)`)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
	}
	for _, q := range []string{
		`INSERT INTO oauth_client_assertion_jti (jti, expires_at) VALUES
			('expired', now() - interval '2 hours'), ('live', now() + interval '1 hour')`,
		`INSERT INTO login_flows (id_hash, csrf_token, expires_at) VALUES
			(uuid_send(gen_random_uuid()), 'expired', now() - interval '1 minute'), (uuid_send(gen_random_uuid()), 'live', now() + interval '10 minutes')`,
		`INSERT INTO passkey_challenges (challenge_hash, purpose, binding, ceremony, expires_at) VALUES
			(uuid_send(gen_random_uuid()), 'expired', '\x00', '{}', now() - interval '2 hours'),
			(uuid_send(gen_random_uuid()), 'live', '\x00', '{}', now() + interval '5 minutes')`,
		`INSERT INTO throttle (key, failures, last_failure_at, blocked_until) VALUES
			('expired', 9, now() - interval '2 days', now() - interval '2 days'), ('live', 9, now() - interval '1 hour', now())`,
		`INSERT INTO outbox (kind, sid, subject, client_id, uri, reason, delivered_at, failed_at, abandoned_at) VALUES
			('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/', 'expired', now() - interval '8 days', NULL, NULL),
			('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/', 'live', now() - interval '1 day', NULL, NULL),
			('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/', 'failed', NULL, now() - interval '30 days', NULL),
			('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/', 'abandoned', NULL, NULL, now() - interval '30 days'),
			('logout', gen_random_uuid(), 's', 'app', 'http://127.0.0.1:1/', 'pending', NULL, NULL, NULL)`,
	} {
		if _, err := h.DB.Pool.Exec(h.Ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

// survivors lists the labels left in each table.
func survivors(t *testing.T, h *servertest.Harness) map[string]string {
	t.Helper()
	out := map[string]string{}
	for table, label := range map[string]string{
		"oauth_authorize_codes": "request_id", "oauth_access_tokens": "request_id", "oauth_refresh_tokens": "request_id",
		"oauth_client_assertion_jti": "jti", "login_flows": "csrf_token", "throttle": "key",
		"outbox": "reason", "passkey_challenges": "purpose",
	} {
		var got string
		err := h.DB.Pool.QueryRow(h.Ctx, `SELECT coalesce(string_agg(`+label+`, ',' ORDER BY `+label+`), '') FROM `+table).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		out[table] = got
	}
	return out
}

func TestOps_Janitor(t *testing.T) {
	h := servertest.New(t)
	h.StopBackground()
	insertSweepRows(t, h)

	deleted, err := h.Srv.CleanUp(h.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if deleted.Total() != 8 {
		t.Errorf("deleted %v (%d rows), want 8: one expired row per table", deleted, deleted.Total())
	}
	want := map[string]string{
		"oauth_authorize_codes":      "in-grace,live,no-expiry",
		"oauth_access_tokens":        "in-grace,live,no-expiry",
		"oauth_refresh_tokens":       "in-grace,live,no-expiry",
		"oauth_client_assertion_jti": "live",
		"login_flows":                "live",
		"throttle":                   "live",
		"outbox":                     "abandoned,failed,live,pending",
		"passkey_challenges":         "live",
	}
	got := survivors(t, h)
	for table, w := range want {
		if got[table] != w {
			t.Errorf("%s keeps %q, want %q", table, got[table], w)
		}
	}

	t.Run("the janitor runs it", func(t *testing.T) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `INSERT INTO oauth_access_tokens
			(signature_hash, request_id, client_id, requested_at, expires_at, request)
			VALUES (uuid_send(gen_random_uuid()), 'expired', 'app', now(), now() - interval '2 hours', '{}')`); err != nil {
			t.Fatal(err)
		}
		h.StartBackground() // sweeps at once
		waitFor(t, 10*time.Second, "the janitor to delete the expired access token", func() bool {
			return survivors(t, h)["oauth_access_tokens"] == want["oauth_access_tokens"]
		})
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOps_JanitorConcurrent cleans one database from two instances at once,
// several calls each, as replicas' janitors do.
func TestOps_JanitorConcurrent(t *testing.T) {
	logs := &lockedBuffer{}
	h1 := servertest.New(t, captureLogs(logs))
	h2 := servertest.NewInstance(t, h1.DB, captureLogs(logs))
	h1.StopBackground()
	h2.StopBackground()
	const rows = 5500
	for _, q := range []string{
		`INSERT INTO oauth_access_tokens (signature_hash, request_id, client_id, requested_at, expires_at, request)
			SELECT uuid_send(gen_random_uuid()), 'r' || i, 'app', now(), now() - interval '1 day', '{}' FROM generate_series(1, $1) i`,
		`INSERT INTO throttle (key, last_failure_at, blocked_until)
			SELECT 'k' || i, now() - interval '3 days', now() - interval '3 days' FROM generate_series(1, $1) i`,
	} {
		if _, err := h1.DB.Pool.Exec(h1.Ctx, q, rows); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu    sync.Mutex
		total = map[string]int64{}
		wg    sync.WaitGroup
	)
	for _, h := range []*servertest.Harness{h1, h2, h1, h2, h1, h2} {
		wg.Go(func() {
			deleted, err := h.Srv.CleanUp(context.Background())
			if err != nil {
				t.Errorf("clean-up: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for table, n := range deleted {
				total[table] += n
			}
		})
	}
	wg.Wait()
	if total["oauth_access_tokens"] != rows || total["throttle"] != rows {
		t.Errorf("deleted %v between them, want %d of each, each row once", total, rows)
	}
	left := dbtest.Value[int](t, h1.DB.Pool, `SELECT (SELECT count(*) FROM oauth_access_tokens) + (SELECT count(*) FROM throttle)`)
	if left != 0 {
		t.Errorf("%d expired rows left", left)
	}

	t.Run("both janitors at once", func(t *testing.T) {
		if _, err := h1.DB.Pool.Exec(h1.Ctx, `INSERT INTO oauth_refresh_tokens
			(signature_hash, request_id, client_id, requested_at, expires_at, request)
			SELECT uuid_send(gen_random_uuid()), 'r' || i, 'app', now(), now() - interval '1 day', '{}' FROM generate_series(1, $1) i`, rows); err != nil {
			t.Fatal(err)
		}
		h1.StartBackground()
		h2.StartBackground()
		waitFor(t, 20*time.Second, "the janitors to delete the expired refresh tokens", func() bool {
			n := dbtest.Value[int](t, h1.DB.Pool, `SELECT count(*) FROM oauth_refresh_tokens`)
			return n == 0
		})
		h1.StopBackground()
		h2.StopBackground()
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=ERROR") && strings.Contains(l, "janitor") {
				t.Errorf("a janitor failed: %s", l)
			}
		}
	})
}

// TestOps_KeyRotation checks that the janitor makes a key another instance
// rotated in visible, and retires the key it superseded once no token it
// signed can be alive.
func TestOps_KeyRotation(t *testing.T) {
	h1 := servertest.New(t)
	h2 := servertest.NewInstance(t, h1.DB)
	oldKid := signingKid(t, h2, "ES256")
	h2.StopBackground() // its first sweep done, it reloads no more

	kid, err := h1.Srv.Keys.Rotate(h1.Ctx, "ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	if jwksHas(t, h2, kid) {
		t.Fatal("instance 2 published the new key before reloading; the test proves nothing")
	}
	h2.StartBackground() // sweeps at once
	waitFor(t, 10*time.Second, "instance 2 to publish the rotated key", func() bool { return jwksHas(t, h2, kid) })
	if got := signingKid(t, h2, "ES256"); got != kid {
		t.Errorf("instance 2 signs ES256 with %s, want the rotated key %s", got, kid)
	}
	if !jwksHas(t, h2, oldKid) {
		t.Error("the superseded key left the JWKS at once; tokens it signed can no longer be verified")
	}

	// Eight days on, past the longest an ID token can come back as a hint
	// (the SSO session's 7 days), the old key goes.
	later := servertest.NewInstance(t, h1.DB, func(c *server.Config) {
		c.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	})
	waitFor(t, 10*time.Second, "the superseded key to be retired", func() bool { return !jwksHas(t, later, oldKid) })
	if !jwksHas(t, later, kid) {
		t.Error("the signing key was retired")
	}
	retired := dbtest.Value[bool](t, h1.DB.Pool, `SELECT retired_at IS NOT NULL FROM signing_keys WHERE kid = $1`, oldKid)
	if !retired {
		t.Error("the superseded key has no retired_at")
	}
}

func signingKid(t *testing.T, h *servertest.Harness, alg string) string {
	t.Helper()
	kid, _, err := h.Srv.Keys.Signer(alg)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func jwksHas(t *testing.T, h *servertest.Harness, kid string) bool {
	t.Helper()
	resp, err := http.Get(h.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid == kid {
			return true
		}
	}
	return false
}
