package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// sink is a kind whose receiver is this test: it keeps what it was sent
// and answers with outcome.
type sink struct {
	mu      sync.Mutex
	got     []Job
	outcome Outcome
}

func (s *sink) kind() Kind {
	return Kind{Timeout: time.Second, GiveUpAfter: time.Minute, Send: func(_ context.Context, j Job) Result {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got = append(s.got, j)
		return Result{Outcome: s.outcome, Error: map[Outcome]string{Retrying: "busy", Failed: "refused"}[s.outcome]}
	}}
}

func (s *sink) jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Job(nil), s.got...)
}

type state struct {
	Attempts                     int
	LastError                    string
	Delivered, Failed, Abandoned bool
}

func rowState(t *testing.T, d *dbtest.DB, id int64) state {
	t.Helper()
	var s state
	err := d.Pool.QueryRow(context.Background(), `
		SELECT attempts, last_error, delivered_at IS NOT NULL, failed_at IS NOT NULL, abandoned_at IS NOT NULL
		FROM outbox WHERE id = $1`, id).Scan(&s.Attempts, &s.LastError, &s.Delivered, &s.Failed, &s.Abandoned)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ids(t *testing.T, d *dbtest.DB, kind string) []int64 {
	t.Helper()
	rows, err := d.Pool.Query(context.Background(), `SELECT id FROM outbox WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// TestQueue: rows queued in a unit exist exactly when it commits, with
// every column and the payload as JSON, and the commit wakes a listener.
func TestQueue(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	listener, err := pgx.ConnectConfig(ctx, d.Pool.Config().ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		t.Fatal(err)
	}

	boom := errors.New("the change failed")
	err = db.Tx(ctx, d.Pool, func(ctx context.Context) error {
		if err := Queue(ctx, d.Pool, start, Message{Kind: "mail", Payload: map[string]string{"to": "a@example.com"}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v", err)
	}
	if got := ids(t, d, "mail"); len(got) != 0 {
		t.Fatalf("a rolled-back unit left rows %v", got)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if n, err := listener.WaitForNotification(waitCtx); err == nil {
		t.Fatalf("a rolled-back unit notified: %+v", n)
	}
	cancel()

	sid := "6f1f2a40-3b1c-4d6e-9a55-0e2b7f9c1d11"
	err = db.Tx(ctx, d.Pool, func(ctx context.Context) error {
		return Queue(ctx, d.Pool, start,
			Message{Kind: "mail", Payload: map[string]string{"to": "a@example.com"}},
			Message{Kind: "logout", SID: sid, Subject: "u1", ClientID: "app", URI: "https://app.example/bcl", Reason: "admin_revoke"})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := listener.WaitForNotification(waitCtx); err != nil {
		t.Fatalf("no notification after the commit: %v", err)
	}
	var payload, gotSID, created string
	if err := d.Pool.QueryRow(ctx, `SELECT payload::text, COALESCE(sid::text, 'null'), created_at::text FROM outbox WHERE kind = 'mail'`).
		Scan(&payload, &gotSID, &created); err != nil {
		t.Fatal(err)
	}
	if payload != `{"to": "a@example.com"}` || gotSID != "null" {
		t.Errorf("mail row: payload %s sid %s", payload, gotSID)
	}
	var j Job
	if err := d.Pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM outbox WHERE kind = 'logout'`).
		Scan(&j.ID, &j.Kind, &j.SID, &j.Subject, &j.ClientID, &j.URI, &j.IncludeSID, &j.Reason, &j.Payload, &j.CreatedAt, &j.Attempts); err != nil {
		t.Fatal(err)
	}
	if j.SID != sid || j.Subject != "u1" || j.ClientID != "app" || j.URI != "https://app.example/bcl" || !j.IncludeSID ||
		j.Reason != "admin_revoke" || string(j.Payload) != "{}" || !j.CreatedAt.Equal(start) {
		t.Errorf("logout row = %+v", j)
	}

	// Outside a unit it runs at once; a message without a kind is refused.
	if err := Queue(ctx, d.Pool, start, Message{Kind: "mail"}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, d, "mail"); len(got) != 2 {
		t.Errorf("mail rows %v, want 2", got)
	}
	if err := Queue(ctx, d.Pool, start, Message{}); err == nil {
		t.Error("a message without a kind was queued")
	}
}

// TestWorker_kinds: a worker claims only the kinds it delivers, records
// each outcome, and backs a retried row off.
func TestWorker_kinds(t *testing.T) {
	d := dbtest.New(t)
	clock := clocktest.New(start)
	ctx := context.Background()
	if err := Queue(ctx, d.Pool, start,
		Message{Kind: "ok"}, Message{Kind: "busy"}, Message{Kind: "refused"}, Message{Kind: "polled", ClientID: "rx"}); err != nil {
		t.Fatal(err)
	}
	okSink, busy, refused := &sink{outcome: Delivered}, &sink{outcome: Retrying}, &sink{outcome: Failed}
	var attempts []Attempt
	var mu sync.Mutex
	w := &Worker{Pool: d.Pool, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kinds:   map[string]Kind{"ok": okSink.kind(), "busy": busy.kind(), "refused": refused.kind()},
		Observe: func(a Attempt) { mu.Lock(); attempts = append(attempts, a); mu.Unlock() }}
	if n, err := w.DeliverDue(ctx); err != nil || n != 3 {
		t.Fatalf("DeliverDue = %d, %v; want the 3 rows of its kinds", n, err)
	}
	if len(okSink.jobs()) != 1 || len(busy.jobs()) != 1 || len(refused.jobs()) != 1 {
		t.Fatalf("sent ok %d busy %d refused %d", len(okSink.jobs()), len(busy.jobs()), len(refused.jobs()))
	}
	if s := rowState(t, d, okSink.jobs()[0].ID); !s.Delivered || s.Attempts != 1 {
		t.Errorf("ok row %+v", s)
	}
	if s := rowState(t, d, refused.jobs()[0].ID); !s.Failed || s.LastError != "refused" {
		t.Errorf("refused row %+v", s)
	}
	if s := rowState(t, d, busy.jobs()[0].ID); s.Delivered || s.Failed || s.LastError != "busy" {
		t.Errorf("busy row %+v", s)
	}
	if s := rowState(t, d, ids(t, d, "polled")[0]); s.Attempts != 0 {
		t.Errorf("a polled row was claimed: %+v", s)
	}
	if len(attempts) != 3 {
		t.Errorf("observed %+v", attempts)
	}
	// Retried after its backoff (at most BaseBackoff for the first), and
	// abandoned once GiveUpAfter has passed.
	clock.Advance(DefaultBaseBackoff)
	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Errorf("after the backoff DeliverDue = %d, want the busy row again", n)
	}
	clock.Advance(2 * time.Minute)
	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Errorf("past GiveUpAfter DeliverDue = %d, want 1", n)
	}
	if s := rowState(t, d, busy.jobs()[0].ID); !s.Abandoned || s.Attempts != 3 {
		t.Errorf("busy row after GiveUpAfter %+v, want abandoned on attempt 3", s)
	}
	clock.Advance(time.Hour)
	if n, _ := w.DeliverDue(ctx); n != 0 {
		t.Errorf("DeliverDue = %d once every row is decided", n)
	}
}

func TestWorker_config(t *testing.T) {
	d := dbtest.New(t)
	for name, w := range map[string]*Worker{
		"no kinds":             {Pool: d.Pool},
		"no Send":              {Pool: d.Pool, Kinds: map[string]Kind{"x": {Timeout: time.Second}}},
		"lease within timeout": {Pool: d.Pool, Lease: 5 * time.Second, Kinds: map[string]Kind{"x": (&sink{}).kind()}},
	} {
		if name == "lease within timeout" {
			w.Kinds["x"] = Kind{Send: w.Kinds["x"].Send, Timeout: 5 * time.Second}
		}
		if _, err := w.DeliverDue(context.Background()); err == nil {
			t.Errorf("%s: DeliverDue ran", name)
		} else if name == "lease within timeout" && !strings.Contains(err.Error(), "Lease") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestWorker_lease covers a worker that claimed a row and died: the row
// stays hidden for the lease, then another worker delivers it, and the
// dead worker's late report cannot undo that.
func TestWorker_lease(t *testing.T) {
	d := dbtest.New(t)
	clock := clocktest.New(start)
	ctx := context.Background()
	if err := Queue(ctx, d.Pool, start, Message{Kind: "ok"}); err != nil {
		t.Fatal(err)
	}
	s := &sink{outcome: Delivered}
	w := &Worker{Pool: d.Pool, Now: clock.Now, Lease: 30 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kinds: map[string]Kind{"ok": s.kind()}}

	crashed, err := claim(ctx, d.Pool, []string{"ok"}, clock.Now(), w.Lease, 10)
	if err != nil || len(crashed) != 1 {
		t.Fatalf("claim = %v, %v; want 1 job", crashed, err)
	}
	clock.Advance(w.Lease - time.Second)
	if n, _ := w.DeliverDue(ctx); n != 0 {
		t.Fatalf("DeliverDue within the lease = %d, want 0", n)
	}
	clock.Advance(time.Second)
	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Fatalf("DeliverDue after the lease = %d, want 1", n)
	}
	if st := rowState(t, d, crashed[0].ID); !st.Delivered || st.Attempts != 2 {
		t.Fatalf("row = %+v, want delivered on attempt 2", st)
	}
	// The crashed worker comes back and reports a failure for its attempt.
	if err := record(ctx, d.Pool, crashed[0], Retrying, clock.Now(), clock.Now().Add(time.Hour), "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	if st := rowState(t, d, crashed[0].ID); !st.Delivered || st.LastError != "" {
		t.Errorf("stale report changed the row: %+v", st)
	}
}

// TestPendingAck: a polled kind's rows go to their own client only, in
// order, until acknowledged; expired ones are left out.
func TestPendingAck(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	var msgs []Message
	for i := range 5 {
		msgs = append(msgs, Message{Kind: "polled", ClientID: "rx", Payload: map[string]int{"n": i}})
	}
	msgs = append(msgs, Message{Kind: "polled", ClientID: "other"}, Message{Kind: "pushed", ClientID: "rx"})
	if err := Queue(ctx, d.Pool, start.Add(-2*time.Hour), Message{Kind: "polled", ClientID: "rx"}); err != nil {
		t.Fatal(err)
	}
	if err := Queue(ctx, d.Pool, start, msgs...); err != nil {
		t.Fatal(err)
	}
	jobs, more, err := Pending(ctx, d.Pool, Filter{Kinds: []string{"polled"}, ClientID: "rx"}, 3, start, time.Hour)
	if err != nil || len(jobs) != 3 || !more {
		t.Fatalf("Pending = %d jobs, more %v, %v; want 3 and more", len(jobs), more, err)
	}
	for i, j := range jobs {
		if want := fmt.Sprintf(`{"n": %d}`, i); string(j.Payload) != want || j.ClientID != "rx" {
			t.Errorf("job %d = %s for %s, want %s", i, j.Payload, j.ClientID, want)
		}
	}
	otherJobs, _, _ := Pending(ctx, d.Pool, Filter{Kinds: []string{"polled"}, ClientID: "other"}, 10, start, time.Hour)
	acked, err := Ack(ctx, d.Pool, "polled", "rx", []int64{jobs[0].ID, jobs[1].ID, otherJobs[0].ID}, start)
	if err != nil || acked != 2 {
		t.Fatalf("Ack = %d, %v; want the client's own 2", acked, err)
	}
	if err := Fail(ctx, d.Pool, "polled", "rx", jobs[2].ID, start, "jwtAud: wrong audience"); err != nil {
		t.Fatal(err)
	}
	rest, more, err := Pending(ctx, d.Pool, Filter{Kinds: []string{"polled"}, ClientID: "rx"}, 10, start, time.Hour)
	if err != nil || len(rest) != 2 || more {
		t.Fatalf("after ack and fail Pending = %d, more %v, %v; want the 2 left", len(rest), more, err)
	}
	if st := rowState(t, d, jobs[2].ID); !st.Failed || st.LastError != "jwtAud: wrong audience" {
		t.Errorf("failed row %+v", st)
	}
	if again, _ := Ack(ctx, d.Pool, "polled", "rx", []int64{jobs[0].ID}, start); again != 0 {
		t.Errorf("a second ack marked %d rows", again)
	}
}

func TestBackoff(t *testing.T) {
	const base, maxDelay = time.Second, 5 * time.Minute
	tests := []struct {
		attempts int
		ceiling  time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{5, 16 * time.Second},
		{9, 256 * time.Second},
		{10, maxDelay},
		{80, maxDelay},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d", tt.attempts), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := backoff(base, maxDelay, tt.attempts)
				if d < 0 || d > tt.ceiling {
					t.Fatalf("backoff = %s, want within [0, %s]", d, tt.ceiling)
				}
				seen[d] = true
			}
			if len(seen) < 100 {
				t.Errorf("%d distinct delays in 200 draws: not jittered", len(seen))
			}
		})
	}
}
