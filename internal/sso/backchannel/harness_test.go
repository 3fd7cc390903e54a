package backchannel

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/backchannel/logouttest"
	"github.com/idp/idp/internal/sso/keys"
)

const issuer = "http://idp.test"

// syncBuffer collects log output from concurrent deliveries.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one test's database, keys, clock and log.
type env struct {
	t     *testing.T
	db    *dbtest.DB
	now   func() time.Time
	clock *clocktest.Clock // nil when now is the real clock
	keys  *keys.Set
	logs  *syncBuffer

	mu        sync.Mutex
	receivers []*logouttest.Receiver // every token they saw is checked against the logs
}

// newEnv uses a settable clock; newRealEnv the wall clock, for Run.
func newEnv(t *testing.T) *env {
	c := clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	e := setup(t, c.Now)
	e.clock = c
	return e
}

func newRealEnv(t *testing.T) *env { return setup(t, time.Now) }

func setup(t *testing.T, now func() time.Time) *env {
	t.Helper()
	d := dbtest.New(t)
	box, err := secrets.New("test-server-secret-0123456789abcdef", "signing-keys")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Load(context.Background(), d.Pool, box, now)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: d, now: now, keys: ks, logs: &syncBuffer{}}
	t.Cleanup(e.checkLogs)
	return e
}

// checkLogs fails the test if any token a receiver saw was logged.
func (e *env) checkLogs() {
	logs := e.logs.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	var tokens []string
	for _, rc := range e.receivers {
		tokens = append(tokens, rc.Raw()...)
	}
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if strings.Contains(logs, tok) || strings.Contains(logs, tok[strings.LastIndex(tok, ".")+1:]) {
			e.t.Errorf("a logout token appears in the logs")
			return
		}
	}
}

// testWorker is what the server runs, a Sender as the logout kind of an
// outbox.Worker, with the settings of both in one place so that a test
// changes one before it delivers.
type testWorker struct {
	Sender
	outbox.Worker
}

func (w *testWorker) build() (*outbox.Worker, error) {
	k, err := w.Sender.Kind()
	if err != nil {
		return nil, err
	}
	ow := w.Worker
	ow.Kinds = map[string]outbox.Kind{sessions.LogoutKind: k}
	return &ow, nil
}

func (w *testWorker) DeliverDue(ctx context.Context) (int, error) {
	ow, err := w.build()
	if err != nil {
		return 0, err
	}
	return ow.DeliverDue(ctx)
}

func (w *testWorker) Run(ctx context.Context) error {
	ow, err := w.build()
	if err != nil {
		return err
	}
	return ow.Run(ctx)
}

// worker delivers to e's receivers, which listen on loopback: it allows
// private addresses (TestWorker_PrivateAddresses tests refusing them).
func (e *env) worker() *testWorker {
	return &testWorker{
		Sender: Sender{
			Pool:         e.db.Pool,
			Keys:         e.keys,
			Issuer:       issuer,
			Now:          e.now,
			AllowPrivate: true,
			GiveUpAfter:  time.Minute,
		},
		Worker: outbox.Worker{
			Pool:        e.db.Pool,
			Now:         e.now,
			Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			BaseBackoff: time.Second,
			MaxBackoff:  4 * time.Second,
		},
	}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) client(id, alg string) {
	e.t.Helper()
	e.exec(`INSERT INTO oauth_clients (id, id_token_signed_response_alg) VALUES ($1, $2)`, id, alg)
}

// queue inserts an outbox row due now, as the revocation path would: with
// the client's alg, or none for a client that is gone.
func (e *env) queue(clientID, uri string, includeSID bool) (id int64, sid, subject string) {
	e.t.Helper()
	now := e.now()
	err := e.db.Pool.QueryRow(context.Background(), `
		INSERT INTO outbox (kind, sid, subject, client_id, uri, include_sid, reason, payload, created_at, next_attempt_at)
		VALUES ($5, gen_random_uuid(), 'user-' || gen_random_uuid(), $1, $2, $3, 'admin_revoke',
			jsonb_build_object('alg', COALESCE((SELECT id_token_signed_response_alg FROM oauth_clients WHERE id = $1), '')), $4, $4)
		RETURNING id, sid::text, subject`, clientID, uri, includeSID, now, sessions.LogoutKind).Scan(&id, &sid, &subject)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, sid, subject
}

type outboxRow struct {
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	DeliveredAt   *time.Time
	FailedAt      *time.Time
	AbandonedAt   *time.Time
}

func (e *env) row(id int64) outboxRow {
	e.t.Helper()
	var r outboxRow
	err := e.db.Pool.QueryRow(context.Background(), `
		SELECT attempts, next_attempt_at, last_error, delivered_at, failed_at, abandoned_at
		FROM outbox WHERE id = $1`, id).
		Scan(&r.Attempts, &r.NextAttemptAt, &r.LastError, &r.DeliveredAt, &r.FailedAt, &r.AbandonedAt)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) deliverDue(w *testWorker) int {
	e.t.Helper()
	n, err := w.DeliverDue(context.Background())
	if err != nil {
		e.t.Fatalf("DeliverDue: %v", err)
	}
	return n
}

func ok(int, http.ResponseWriter, string) {}

// app is what e's apps expect of a logout token: e's issuer, keys and
// clock.
func (e *env) app() logouttest.Config {
	return logouttest.Config{Issuer: issuer, Now: e.now,
		Keys: func(string) (jose.JSONWebKeySet, error) { return e.keys.JWKS(), nil }}
}

// receiver is an app's back-channel logout endpoint (package logouttest)
// that verifies every token against e's key set and clock, then answers
// with respond. An invalid token fails the test; every token posted is
// checked against the logs.
func (e *env) receiver(respond func(n int, w http.ResponseWriter, token string)) *logouttest.Receiver {
	rc := logouttest.New(e.t, e.app())
	rc.Respond(func(n int, w http.ResponseWriter, c logouttest.Claims) { respond(n, w, c.Raw) })
	e.mu.Lock()
	e.receivers = append(e.receivers, rc)
	e.mu.Unlock()
	e.t.Cleanup(func() {
		if errs := rc.Errors(); len(errs) > 0 {
			e.t.Errorf("receiver: invalid logout tokens: %v", errs)
		}
	})
	return rc
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
