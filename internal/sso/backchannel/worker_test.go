package backchannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/keys"
)

func TestWorker_DeliverDue(t *testing.T) {
	t.Run("delivered with a token that verifies against the JWKS", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		e.client("app", keys.RS256)
		id, sid, sub := e.queue("app", rc.URL, true)

		if n := e.deliverDue(e.worker()); n != 1 {
			t.Fatalf("DeliverDue = %d, want 1", n)
		}
		got := rc.Tokens()
		if len(got) != 1 {
			t.Fatalf("receiver got %d tokens, want 1", len(got))
		}
		c := got[0].All
		if got[0].Alg != keys.RS256 || c["aud"] != "app" || c["sub"] != sub || c["sid"] != sid {
			t.Errorf("alg %s aud %v sub %v sid %v; want RS256 app %s %s", got[0].Alg, c["aud"], c["sub"], c["sid"], sub, sid)
		}
		r := e.row(id)
		if r.DeliveredAt == nil || !r.DeliveredAt.Equal(e.now()) || r.Attempts != 1 || r.LastError != "" {
			t.Errorf("row = %+v, want delivered now after 1 attempt", r)
		}
		if n := e.deliverDue(e.worker()); n != 0 {
			t.Errorf("second DeliverDue = %d, want 0", n)
		}
		if !strings.Contains(e.logs.String(), fmt.Sprintf("outbox_id=%d kind=logout client_id=app outcome=delivered attempt=1", id)) {
			t.Errorf("log lacks the delivery record:\n%s", e.logs)
		}
	})

	t.Run("204 counts as delivered", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(func(_ int, w http.ResponseWriter, _ string) { w.WriteHeader(http.StatusNoContent) })
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		e.deliverDue(e.worker())
		if r := e.row(id); r.DeliveredAt == nil {
			t.Errorf("row = %+v, want delivered", r)
		}
	})

	t.Run("ES256 client gets an ES256 token", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		e.client("es-app", keys.ES256)
		id, _, _ := e.queue("es-app", rc.URL, true)
		e.deliverDue(e.worker())
		got := rc.Tokens()
		wantKid, _, _ := e.keys.Signer(keys.ES256)
		if len(got) != 1 || got[0].Alg != keys.ES256 || got[0].Kid != wantKid {
			t.Fatalf("got %+v, want one ES256 token with kid %s", got, wantKid)
		}
		if r := e.row(id); r.DeliveredAt == nil {
			t.Errorf("row = %+v, want delivered", r)
		}
	})

	t.Run("deleted client gets an RS256 token", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		id, _, _ := e.queue("gone", rc.URL, true)
		e.deliverDue(e.worker())
		if got := rc.Tokens(); len(got) != 1 || got[0].Alg != keys.RS256 {
			t.Fatalf("got %+v, want one RS256 token", got)
		}
		if r := e.row(id); r.DeliveredAt == nil {
			t.Errorf("row = %+v, want delivered", r)
		}
	})

	t.Run("include_sid false leaves sid out", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		e.client("app", keys.RS256)
		_, _, sub := e.queue("app", rc.URL, false)
		e.deliverDue(e.worker())
		got := rc.Tokens()
		if len(got) != 1 {
			t.Fatalf("receiver got %d tokens, want 1", len(got))
		}
		if _, has := got[0].All["sid"]; has || got[0].All["sub"] != sub {
			t.Errorf("claims %v, want sub %s and no sid", got[0].All, sub)
		}
	})

	t.Run("503 twice then 204: delivered on the third attempt", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(func(n int, w http.ResponseWriter, _ string) {
			if n <= 2 {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		w := e.worker()

		for attempt := 1; attempt <= 2; attempt++ {
			if n := e.deliverDue(w); n != 1 {
				t.Fatalf("attempt %d: DeliverDue = %d, want 1", attempt, n)
			}
			r := e.row(id)
			ceiling := w.BaseBackoff << (attempt - 1)
			if r.DeliveredAt != nil || r.FailedAt != nil || r.AbandonedAt != nil || r.Attempts != attempt ||
				r.NextAttemptAt.Before(e.now()) || r.NextAttemptAt.After(e.now().Add(ceiling)) ||
				r.LastError != "HTTP 503: down for maintenance" {
				t.Fatalf("after attempt %d row = %+v, want a retry within %s", attempt, r, ceiling)
			}
			e.clock.Advance(w.MaxBackoff)
		}
		if n := e.deliverDue(w); n != 1 {
			t.Fatalf("attempt 3: DeliverDue = %d, want 1", n)
		}
		r := e.row(id)
		if r.DeliveredAt == nil || r.Attempts != 3 || r.LastError != "" {
			t.Errorf("row = %+v, want delivered after 3 attempts", r)
		}
		jtis := map[any]bool{}
		for _, tok := range rc.Tokens() {
			jtis[tok.All["jti"]] = true
		}
		if len(jtis) != 3 {
			t.Errorf("%d distinct jtis over 3 attempts, want 3", len(jtis))
		}
	})

	t.Run("429 honours Retry-After", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(func(_ int, w http.ResponseWriter, _ string) {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		e.deliverDue(e.worker())
		r := e.row(id)
		if r.FailedAt != nil || r.NextAttemptAt.Before(e.now().Add(3*time.Second)) || r.LastError != "HTTP 429" {
			t.Errorf("row = %+v, want a retry no sooner than 3 s", r)
		}
	})

	t.Run("400 fails without retry and without the token in last_error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(func(_ int, w http.ResponseWriter, token string) {
			// A careless relying party echoes what it was sent.
			http.Error(w, "invalid_request: cannot use "+token, http.StatusBadRequest)
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		w := e.worker()
		e.deliverDue(w)
		r := e.row(id)
		if r.FailedAt == nil || r.DeliveredAt != nil || r.AbandonedAt != nil || r.Attempts != 1 {
			t.Fatalf("row = %+v, want failed after 1 attempt", r)
		}
		if r.LastError != "HTTP 400: invalid_request: cannot use [logout_token]" {
			t.Errorf("last_error = %q", r.LastError)
		}
		e.clock.Advance(time.Hour)
		if n := e.deliverDue(w); n != 0 {
			t.Errorf("DeliverDue after failure = %d, want 0", n)
		}
		if len(rc.Tokens()) != 1 {
			t.Errorf("receiver got %d tokens, want 1", len(rc.Tokens()))
		}
	})

	t.Run("redirect is not followed and fails", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		elsewhere := e.receiver(ok)
		rc := e.receiver(func(_ int, w http.ResponseWriter, _ string) {
			w.Header().Set("Location", elsewhere.URL)
			w.WriteHeader(http.StatusTemporaryRedirect)
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		e.deliverDue(e.worker())
		if r := e.row(id); r.FailedAt == nil || r.LastError != "HTTP 307" {
			t.Errorf("row = %+v, want failed with HTTP 307", r)
		}
		if len(elsewhere.Raw()) != 0 {
			t.Errorf("redirect target got %d requests, want 0", len(elsewhere.Raw()))
		}
	})

	t.Run("receiver down: retried, then abandoned after GiveUpAfter", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		down := e.receiver(ok)
		down.Close()
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", down.URL, true)
		w := e.worker()
		created := e.now()
		deadline := created.Add(w.GiveUpAfter)

		for i := 0; ; i++ {
			if i > 100 {
				t.Fatal("not abandoned after 100 rounds")
			}
			e.deliverDue(w)
			r := e.row(id)
			if r.AbandonedAt != nil {
				break
			}
			if r.FailedAt != nil || r.DeliveredAt != nil || r.LastError == "" || r.NextAttemptAt.After(deadline) {
				t.Fatalf("round %d: row = %+v, want a retry no later than %s", i, r, deadline)
			}
			e.clock.Advance(w.MaxBackoff)
		}
		r := e.row(id)
		if r.AbandonedAt.Before(deadline) || r.Attempts < 2 || !strings.Contains(r.LastError, "connect") {
			t.Errorf("row = %+v, want abandoned at or after %s, after several connection failures", r, deadline)
		}
		e.clock.Advance(time.Hour)
		if n := e.deliverDue(w); n != 0 {
			t.Errorf("DeliverDue after abandonment = %d, want 0", n)
		}
	})

	t.Run("timeout is retried", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		release := make(chan struct{})
		rc := e.receiver(func(_ int, _ http.ResponseWriter, _ string) { <-release })
		defer close(release)
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		w := e.worker()
		w.HTTP = &http.Client{Timeout: 200 * time.Millisecond}
		w.Lease = time.Second
		e.deliverDue(w)
		if r := e.row(id); r.FailedAt != nil || r.DeliveredAt != nil || !strings.Contains(r.LastError, "Timeout") {
			t.Errorf("row = %+v, want a retry after a timeout", r)
		}
	})

	t.Run("invalid uri fails", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", "ftp://rp.example/logout", true)
		e.deliverDue(e.worker())
		if r := e.row(id); r.FailedAt == nil || r.LastError != "invalid backchannel_logout_uri" {
			t.Errorf("row = %+v, want failed", r)
		}
	})

	t.Run("lease no longer than the HTTP timeout is refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := e.worker()
		w.Lease = DefaultTimeout
		if _, err := w.DeliverDue(context.Background()); err == nil || !strings.Contains(err.Error(), "Lease") {
			t.Errorf("DeliverDue with Lease = timeout: %v, want a configuration error", err)
		}
	})
}

func TestWorker_Run(t *testing.T) {
	t.Run("two workers deliver 200 rows exactly once", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t)
		rc := e.receiver(func(int, http.ResponseWriter, string) {
			time.Sleep(5 * time.Millisecond) // let the workers' deliveries interleave
		})
		e.client("app", keys.RS256)
		e.exec(`INSERT INTO outbox (kind, sid, subject, client_id, uri)
			SELECT 'logout', gen_random_uuid(), 'user-' || g, 'app', $1 FROM generate_series(1, 200) g`, rc.URL)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		logs := []*syncBuffer{{}, {}}
		for _, buf := range logs {
			w := e.worker()
			w.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, buf), nil))
			w.Worker.Concurrency = 8
			w.PollInterval = 50 * time.Millisecond
			wg.Go(func() {
				if err := w.Run(ctx); err != nil {
					t.Errorf("Run: %v", err)
				}
			})
		}
		waitFor(t, 30*time.Second, "200 deliveries", func() bool {
			n := dbtest.Value[int](t, e.db.Pool, `SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL`)
			return n == 200
		})
		cancel()
		wg.Wait()

		perSID := map[string]int{}
		for _, tok := range rc.Tokens() {
			sid, _ := tok.All["sid"].(string)
			perSID[sid]++
		}
		if len(perSID) != 200 {
			t.Errorf("receiver saw %d sessions, want 200", len(perSID))
		}
		for sid, n := range perSID {
			if n != 1 {
				t.Errorf("sid %s notified %d times", sid, n)
			}
		}
		for i, buf := range logs {
			n := strings.Count(buf.String(), "outcome=delivered")
			t.Logf("worker %d delivered %d", i, n)
			if n == 0 {
				t.Errorf("worker %d delivered nothing: the test did not exercise two workers", i)
			}
		}
		extra := dbtest.Value[int](t, e.db.Pool, `SELECT count(*) FROM outbox WHERE attempts <> 1`)
		if extra != 0 {
			t.Errorf("%d rows attempted other than once", extra)
		}
	})

	t.Run("a commit that queues a row wakes it promptly", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t)
		rc := e.receiver(ok)
		e.client("app", keys.RS256)
		w := e.worker()
		w.PollInterval = time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()

		waitFor(t, 5*time.Second, "the worker to LISTEN", func() bool {
			n := dbtest.Value[int](t, e.db.Pool, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND query LIKE 'LISTEN %'`)
			return n == 1
		})
		time.Sleep(200 * time.Millisecond) // past the catch-up look that follows LISTEN

		// Queued in a transaction still open, the row is invisible and no
		// one is woken; its commit wakes the worker (the outbox table's
		// trigger notifies), long before the hour-long poll.
		tx, err := e.db.Pool.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck
		var id int64
		if err := tx.QueryRow(context.Background(), `
			INSERT INTO outbox (kind, sid, subject, client_id, uri) VALUES ($1, gen_random_uuid(), 'user-1', 'app', $2)
			RETURNING id`, sessions.LogoutKind, rc.URL).Scan(&id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(rc.Tokens()); n != 0 {
			t.Fatalf("%d deliveries before the commit", n)
		}
		start := time.Now()
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Second, "delivery after the commit", func() bool { return e.row(id).DeliveredAt != nil })
		t.Logf("delivered %s after the commit", time.Since(start))
	})

	t.Run("cancel lets in-flight deliveries finish", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t)
		arrived := make(chan struct{})
		release := make(chan struct{})
		rc := e.receiver(func(_ int, _ http.ResponseWriter, _ string) {
			close(arrived)
			<-release
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		w := e.worker()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()

		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("delivery never arrived")
		}
		cancel()
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) with a delivery in flight", err)
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after the delivery finished")
		}
		if r := e.row(id); r.DeliveredAt == nil {
			t.Errorf("row = %+v, want delivered", r)
		}
	})
}

func TestRetry(t *testing.T) {
	t.Run("abandoned row is delivered again", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		e.clock.Advance(2 * time.Hour)
		e.exec(`UPDATE outbox SET attempts = 9, abandoned_at = $2::timestamptz, last_error = 'dial tcp: connection refused',
			next_attempt_at = $2::timestamptz + interval '1 hour' WHERE id = $1`, id, e.now())
		w := e.worker()
		if n := e.deliverDue(w); n != 0 {
			t.Fatalf("abandoned row claimed: %d", n)
		}

		listener, err := pgx.Connect(context.Background(), e.db.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Close(context.Background())
		if _, err := listener.Exec(context.Background(), "LISTEN "+outbox.NotifyChannel); err != nil {
			t.Fatal(err)
		}

		if err := outbox.Retry(context.Background(), e.db.Pool, id); err != nil {
			t.Fatal(err)
		}
		waitCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := listener.WaitForNotification(waitCtx); err != nil {
			t.Errorf("Retry sent no NOTIFY: %v", err)
		}
		if r := e.row(id); r.AbandonedAt != nil {
			t.Fatalf("row still abandoned: %+v", r)
		}
		if n := e.deliverDue(w); n != 1 {
			t.Fatalf("DeliverDue after Retry = %d, want 1", n)
		}
		if r := e.row(id); r.DeliveredAt == nil || r.Attempts != 10 || r.AbandonedAt != nil {
			t.Errorf("row = %+v, want delivered on attempt 10", r)
		}
	})

	t.Run("failed row is delivered again", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(func(n int, w http.ResponseWriter, _ string) {
			if n == 1 {
				w.WriteHeader(http.StatusNotFound)
			}
		})
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		w := e.worker()
		e.deliverDue(w)
		if r := e.row(id); r.FailedAt == nil {
			t.Fatalf("row = %+v, want failed", r)
		}
		if err := outbox.Retry(context.Background(), e.db.Pool, id); err != nil {
			t.Fatal(err)
		}
		e.deliverDue(w)
		if r := e.row(id); r.DeliveredAt == nil || r.FailedAt != nil {
			t.Errorf("row = %+v, want delivered", r)
		}
	})

	t.Run("delivered or unknown row", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rc := e.receiver(ok)
		e.client("app", keys.RS256)
		id, _, _ := e.queue("app", rc.URL, true)
		e.deliverDue(e.worker())
		for _, target := range []int64{id, id + 1000} {
			if err := outbox.Retry(context.Background(), e.db.Pool, target); !errors.Is(err, outbox.ErrNotFound) {
				t.Errorf("Retry(%d) = %v, want ErrNotFound", target, err)
			}
		}
		if r := e.row(id); r.DeliveredAt == nil || r.Attempts != 1 {
			t.Errorf("Retry changed a delivered row: %+v", r)
		}
	})
}

func TestRedact(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwOi8vaWRwIn0.c2lnbmF0dXJl"
	tests := []struct {
		name, in, want string
	}{
		{"token", "bad " + token + " here", "bad [logout_token] here"},
		{"other jwt", "bad eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln", "bad [jwt]"},
		{"cut-off jwt", "bad eyJhbGciOiJFUzI1NiJ9.eyJ4", "bad [jwt]"},
		{"invalid utf-8 and NUL", "a\xffb\x00c", "a\uFFFDbc"},
		{"long", strings.Repeat("é", 150), strings.Repeat("é", 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact(tt.in, token); got != tt.want {
				t.Errorf("redact = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWorker_PrivateAddresses: unless private addresses are allowed, a
// notification to this host is refused where the connection would be made,
// after DNS resolution: a name (localhost) that resolves to loopback is
// refused like a loopback address, the app never hears a thing, and the
// notification fails (no retries) with a reason an administrator can act
// on.
func TestWorker_PrivateAddresses(t *testing.T) {
	e := newEnv(t)
	rc := e.receiver(ok)
	e.client("app", keys.RS256)
	port := rc.URL[strings.LastIndex(rc.URL, ":")+1:]
	for _, uri := range []string{"http://localhost:" + port + "/bc", rc.URL + "/bc"} {
		id, _, _ := e.queue("app", uri, true)
		w := e.worker()
		w.AllowPrivate = false
		e.deliverDue(w)
		r := e.row(id)
		if r.FailedAt == nil || r.DeliveredAt != nil || !strings.Contains(r.LastError, "IDP_ALLOW_PRIVATE_BACKCHANNEL") {
			t.Errorf("%s: row = %+v, want failed, naming IDP_ALLOW_PRIVATE_BACKCHANNEL", uri, r)
		}
	}
	if n := len(rc.Tokens()); n != 0 {
		t.Errorf("the app on loopback received %d notifications, want none", n)
	}

	t.Run("allowed", func(t *testing.T) {
		id, _, _ := e.queue("app", "http://localhost:"+port+"/bc", true)
		e.deliverDue(e.worker())
		if r := e.row(id); r.DeliveredAt == nil {
			t.Errorf("row = %+v, want delivered when private addresses are allowed", r)
		}
	})
}
