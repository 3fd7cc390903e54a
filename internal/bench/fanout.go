package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/backchannel/logouttest"
)

// Fanout is the outcome of the revoke-all scenario.
type Fanout struct {
	Sessions int `json:"sessions"`
	Apps     int `json:"apps"`
	// Method is how the revocation was asked for: the admin API over HTTP,
	// or sessions.Manager.Revoke in-process when the API is not mounted.
	Method string `json:"method"`
	// Revoked is what the provider said it ended.
	Revoked sessions.Result `json:"revoked"`
	// Call is the time until the revocation returned; Last the time, from
	// the same start, until the last notification arrived.
	Call     time.Duration `json:"call_ns"`
	Last     time.Duration `json:"last_notification_ns"`
	Expected int           `json:"notifications_expected"`
	Received int           `json:"notifications_received"` // distinct (app, sid), verified
	// Duplicates are repeated deliveries (delivery is at least once);
	// Invalid are tokens that failed verification.
	Duplicates int64 `json:"duplicates"`
	Invalid    int64 `json:"invalid"`
	// Connections is how many TCP connections the provider opened to the
	// receivers to deliver them.
	Connections int64 `json:"connections"`
	// SETs are the session-revoked events of a Shared Signals push
	// stream, delivered from the same outbox alongside the logout tokens.
	SETs SETs `json:"session_revoked_sets"`
	// WorkerRoundTrips is the database round trips made outside requests
	// from the revocation until the last notification and the last SET:
	// the delivery worker's claims and outcome records, the stream's
	// lookups (and the janitor, if it ran).
	WorkerRoundTrips int64        `json:"worker_round_trips"`
	RoundTrips       []RoundTrips `json:"round_trips"`
	Errors           []string     `json:"errors,omitempty"`
}

// fanoutUser is the account whose sessions are revoked.
const fanoutEmail = "fanout@bench.example"

// receiver is one app's back-channel logout endpoint. It verifies each
// logout token as an app must (signature against the provider's JWKS, typ,
// iss, aud, iat/exp, the event, sid, no nonce) and counts distinct sids.
type receiver struct {
	clientID string
	subject  string
	issuer   string
	keys     *jwksCache
	tally    *tally
	srv      *http.Server
	url      string
	conns    atomic.Int64

	mu         sync.Mutex
	seen       map[string]bool
	duplicates int64
	invalid    int64
	firstErr   string
}

// tally counts arrivals across receivers and notes when the last expected
// one came.
type tally struct {
	expected int64
	arrived  atomic.Int64
	done     chan struct{}
	at       time.Time // written once, before done is closed
}

func (t *tally) arrive() {
	if t.arrived.Add(1) == t.expected {
		t.at = time.Now()
		close(t.done)
	}
}

func startReceiver(clientID, subject, issuer string, keys *jwksCache, t *tally) (*receiver, error) {
	rc := &receiver{clientID: clientID, subject: subject, issuer: issuer, keys: keys, tally: t, seen: map[string]bool{}}
	srv, base, err := serveLoopback(http.HandlerFunc(rc.serve), &rc.conns)
	if err != nil {
		return nil, err
	}
	rc.srv, rc.url = srv, base+"/backchannel-logout"
	return rc, nil
}

// serveLoopback serves h on a fresh loopback port, counting the TCP
// connections opened to it, and returns the server and its base URL.
func serveLoopback(h http.Handler, conns *atomic.Int64) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed at close
	return srv, "http://" + ln.Addr().String(), nil
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc.srv.Shutdown(ctx) //nolint:errcheck
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	sid, err := rc.verify(r.Context(), r.PostFormValue("logout_token"))
	rc.mu.Lock()
	fresh := false
	switch {
	case err != nil:
		rc.invalid++
		if rc.firstErr == "" {
			rc.firstErr = err.Error()
		}
	case rc.seen[sid]:
		rc.duplicates++
	default:
		rc.seen[sid] = true
		fresh = true
	}
	rc.mu.Unlock()
	if err != nil {
		http.Error(w, "invalid logout token", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	if fresh {
		rc.tally.arrive()
	}
}

// verify checks a logout token as the app would (package logouttest, the
// tests' one relying party) and returns its sid. Errors never carry the
// token.
func (rc *receiver) verify(ctx context.Context, raw string) (string, error) {
	c, err := logouttest.Verify(logouttest.Config{Issuer: rc.issuer, ClientID: rc.clientID, Subject: rc.subject,
		Leeway: time.Minute, RequireSID: true,
		Keys: func(kid string) (jose.JSONWebKeySet, error) { return rc.keys.set(ctx, kid) }}, raw)
	if err != nil {
		return "", fmt.Errorf("logout token: %w", err)
	}
	return c.SID, nil
}

// jwksCache is an app's copy of the provider's JWKS, fetched again when a
// token names a key it does not hold.
type jwksCache struct {
	url  string
	hc   *http.Client
	mu   sync.Mutex
	keys jose.JSONWebKeySet
}

// set returns the cached JWKS, fetched again first when it lacks kid.
func (j *jwksCache) set(ctx context.Context, kid string) (jose.JSONWebKeySet, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.keys.Key(kid)) == 1 {
		return j.keys, nil
	}
	if err := j.fetchLocked(ctx); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return j.keys, nil
}

func (j *jwksCache) fetch(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetchLocked(ctx)
}

func (j *jwksCache) fetchLocked(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	resp, err := j.hc.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	j.keys = set
	return nil
}

// revokeAll seeds one user with n sessions, each held by every one of m
// apps whose receivers run here, and a Shared Signals receiver's push
// stream, then revokes them all as an administrator and waits (bounded)
// for every notification and every session-revoked SET.
//
// Seeding is plain SQL, not n sign-ins: sso_sessions rows, client_sessions
// rows for each (session, app), and one access and one refresh token per
// (session, app), so the revocation has tokens to kill as well.
func (r *runner) revokeAll(ctx context.Context, n, m int) (*Fanout, error) {
	f := &Fanout{Sessions: n, Apps: m, Expected: n * m, SETs: SETs{Expected: n}}
	u, err := r.createUser(ctx, fanoutEmail, false)
	if err != nil {
		return nil, err
	}
	t := &tally{expected: int64(n * m), done: make(chan struct{})}
	keys := &jwksCache{url: r.in.issuer + "/.well-known/jwks.json", hc: r.hc}
	var receivers []*receiver
	defer func() {
		for _, rc := range receivers {
			rc.close()
		}
	}()
	appIDs := make([]string, m)
	for i := range m {
		appIDs[i] = fmt.Sprintf("bench-fanout-%d", i+1)
		rc, err := startReceiver(appIDs[i], u.ID, r.in.issuer, keys, t)
		if err != nil {
			return nil, err
		}
		receivers = append(receivers, rc)
		if _, err := r.createClient(ctx, clients.Client{ID: appIDs[i], BackchannelLogoutURI: rc.url,
			BackchannelLogoutSessionRequired: true, GrantTypes: []string{"authorization_code"}}); err != nil {
			return nil, err
		}
	}
	sets := &tally{expected: int64(n), done: make(chan struct{})}
	sr, err := startSETReceiver(r.in.issuer, u.ID, sets)
	if err != nil {
		return nil, err
	}
	defer sr.close()
	if f.SETs.StreamID, err = r.openStream(ctx, sr); err != nil {
		return nil, err
	}
	if err := r.seedSessions(ctx, u.ID, n, appIDs); err != nil {
		return nil, err
	}
	// The apps hold the JWKS before the clock starts.
	if err := keys.fetch(ctx); err != nil {
		return nil, err
	}

	revoke, method, err := r.revoker(ctx)
	if err != nil {
		return nil, err
	}
	f.Method = method
	r.phase(ScenarioRevokeAll)
	bg := r.in.background.Load()
	start := time.Now()
	f.Revoked, err = revoke(ctx, u.ID)
	f.Call = time.Since(start)
	r.phase("")
	if err != nil {
		return nil, fmt.Errorf("bench: revoke all: %w", err)
	}
	if f.Revoked.Sessions != n || f.Revoked.Notifications != n*m {
		f.Errors = append(f.Errors, fmt.Sprintf("revocation ended %d sessions and queued %d notifications, want %d and %d",
			f.Revoked.Sessions, f.Revoked.Notifications, n, n*m))
	}
	timeout := time.NewTimer(fanoutTimeout)
	defer timeout.Stop()
	logouts, signals := t.done, sets.done
	for logouts != nil || signals != nil {
		select {
		case <-logouts:
			f.Last, logouts = t.at.Sub(start), nil
		case <-signals:
			f.SETs.Last, signals = sets.at.Sub(start), nil
		case <-timeout.C:
			if logouts != nil {
				f.Errors = append(f.Errors, fmt.Sprintf("%d of %d notifications after %s", t.arrived.Load(), n*m, fanoutTimeout))
			}
			if signals != nil {
				f.Errors = append(f.Errors, fmt.Sprintf("%d of %d session-revoked SETs after %s", sets.arrived.Load(), n, fanoutTimeout))
			}
			logouts, signals = nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.WorkerRoundTrips = r.in.background.Load() - bg
	f.Received = int(t.arrived.Load())
	if e := sr.outcome(&f.SETs); e != "" {
		f.Errors = append(f.Errors, "stream "+f.SETs.StreamID+": "+e)
	}
	for _, rc := range receivers {
		rc.mu.Lock()
		f.Duplicates += rc.duplicates
		f.Invalid += rc.invalid
		if rc.firstErr != "" {
			f.Errors = append(f.Errors, rc.clientID+": "+rc.firstErr)
		}
		rc.mu.Unlock()
		f.Connections += rc.conns.Load()
	}
	return f, nil
}

// fanoutTimeout bounds the wait for the last notification.
const fanoutTimeout = 2 * time.Minute

// seedSessions inserts n live sessions of userID, each held by every app,
// and one access and one refresh token per (session, app).
func (r *runner) seedSessions(ctx context.Context, userID string, n int, appIDs []string) error {
	doc := r.codeFlowDoc
	if doc == nil {
		doc = []byte(`{}`)
	}
	const (
		insertSessions = `INSERT INTO sso_sessions (cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time, amr, acr, user_agent, ip)
		 SELECT sha256(convert_to(gen_random_uuid()::text, 'UTF8')), $1, now() + interval '8 hours', now() + interval '7 days',
		        date_trunc('second', now()), '{pwd}', 'urn:idp:acr:pwd', 'idp-bench', '127.0.0.1'
		 FROM generate_series(1, $2)`
		insertClientSessions = `INSERT INTO client_sessions (sid, client_id)
		 SELECT s.id, c FROM sso_sessions s CROSS JOIN unnest($2::text[]) AS c
		 WHERE s.user_id = $1 AND s.revoked_at IS NULL`
		insertAccess = `INSERT INTO oauth_access_tokens (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
		 SELECT sha256(convert_to(gen_random_uuid()::text, 'UTF8')), gen_random_uuid()::text, cs.client_id, $1::text, cs.sid,
		        now(), now() + interval '10 minutes', $2::jsonb
		 FROM client_sessions cs JOIN sso_sessions s ON s.id = cs.sid WHERE s.user_id = ($1::text)::uuid`
		insertRefresh = `INSERT INTO oauth_refresh_tokens (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
		 SELECT sha256(convert_to(gen_random_uuid()::text, 'UTF8')), a.request_id, a.client_id, a.subject, a.sid,
		        now(), now() + interval '30 days', $2::jsonb
		 FROM oauth_access_tokens a WHERE a.subject = $1::text`
	)
	steps := []struct {
		sql  string
		args []any
	}{
		{insertSessions, []any{userID, n}},
		{insertClientSessions, []any{userID, appIDs}},
		{insertAccess, []any{userID, doc}},
		{insertRefresh, []any{userID, doc}},
	}
	tx, err := r.in.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("bench: seed sessions: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	// Fresh statistics, as autovacuum would have them on a live system.
	_, err = r.in.pool.Exec(ctx, `ANALYZE sso_sessions, client_sessions, oauth_access_tokens, oauth_refresh_tokens`)
	return err
}
