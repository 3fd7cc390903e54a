package outbox

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
)

// streamRows queues, for client rx, n rows of kind "pushed" about stream
// s, and returns their ids.
func streamRows(t *testing.T, d *dbtest.DB, at time.Time, client, stream string, n int) []int64 {
	t.Helper()
	var msgs []Message
	for range n {
		msgs = append(msgs, Message{Kind: "pushed", ClientID: client, Reason: "ev", Payload: map[string]string{"stream_id": stream}})
	}
	before := ids(t, d, "pushed")
	if err := Queue(context.Background(), d.Pool, at, msgs...); err != nil {
		t.Fatal(err)
	}
	return ids(t, d, "pushed")[len(before):]
}

func nextAttemptHeld(t *testing.T, d *dbtest.DB, id int64) bool {
	t.Helper()
	return dbtest.Value[bool](t, d.Pool, `SELECT next_attempt_at = 'infinity' FROM outbox WHERE id = $1`, id)
}

// TestBulk: a stream's rows are counted, held, released, retried and
// failed together, and nobody else's are touched.
func TestBulk(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	clock := clocktest.New(start)
	s := &sink{outcome: Failed}
	w := &Worker{Pool: d.Pool, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kinds: map[string]Kind{"pushed": s.kind()}}
	mine := streamRows(t, d, start, "rx", "s1", 3)
	other := streamRows(t, d, start, "rx", "s0", 1) // an earlier stream of the same client
	theirs := streamRows(t, d, start, "ry", "s2", 1)
	stream := Filter{Kinds: []string{"pushed"}, ClientID: "rx", Path: []string{"stream_id"}, Values: []string{"s1"}}

	if _, err := Hold(ctx, d.Pool, Filter{}); err == nil {
		t.Fatal("Hold without kinds ran")
	}
	if n, err := Hold(ctx, d.Pool, stream); err != nil || n != 3 {
		t.Fatalf("Hold = %d, %v; want the stream's 3", n, err)
	}
	// Held rows are never claimed, however late it gets.
	clock.Advance(50 * time.Second)
	if n, err := w.DeliverDue(ctx); err != nil || n != 2 {
		t.Fatalf("DeliverDue = %d, %v; want the 2 rows not held", n, err)
	}
	for _, id := range append(other, theirs...) {
		if st := rowState(t, d, id); !st.Failed {
			t.Errorf("row %d of another stream: %+v, want failed (attempted)", id, st)
		}
	}
	b, err := Backlogs(ctx, d.Pool, Filter{Kinds: []string{"pushed"}, Path: []string{"stream_id"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := b[Group{"rx", "s1"}]; got != (Backlog{Pending: 3, Held: 3}) {
		t.Errorf("backlog of s1 = %+v, want 3 pending, all held", got)
	}
	if got := b[Group{"ry", "s2"}]; got != (Backlog{Failed: 1, LastError: "refused"}) {
		t.Errorf("backlog of s2 = %+v, want 1 failed with its error", got)
	}
	if len(b) != 3 {
		t.Errorf("backlogs %+v, want 3 groups", b)
	}

	// Released, they are due; failed, they stay; retried, due again.
	if n, err := Release(ctx, d.Pool, stream); err != nil || n != 3 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	if n, _ := w.DeliverDue(ctx); n != 3 {
		t.Fatalf("DeliverDue after the release = %d, want 3", n)
	}
	if n, err := RetryAll(ctx, d.Pool, stream); err != nil || n != 3 {
		t.Fatalf("RetryAll = %d, %v; want the 3 failed", n, err)
	}
	if b, _ := Backlogs(ctx, d.Pool, stream); b[Group{"rx", "s1"}].Pending != 3 {
		t.Errorf("after RetryAll: %+v, want 3 pending", b)
	}
	if n, err := FailAll(ctx, d.Pool, stream, clock.Now(), "the stream was disabled"); err != nil || n != 3 {
		t.Fatalf("FailAll = %d, %v", n, err)
	}
	if st := rowState(t, d, mine[0]); !st.Failed || st.LastError != "the stream was disabled" {
		t.Errorf("after FailAll: %+v", st)
	}
	if st := rowState(t, d, theirs[0]); st.LastError != "refused" {
		t.Errorf("another client's row changed: %+v", st)
	}

	found, err := Find(ctx, d.Pool, Filter{Kinds: []string{"pushed"}, ClientID: "ry", Path: []string{"stream_id"}, Values: []string{"s2", "s1"}})
	if err != nil || len(found) != 1 || found["s2"] != theirs[0] {
		t.Errorf("Find = %v, %v; want ry's row by its stream id", found, err)
	}
}

// TestWorker_held: an attempt that holds its row leaves it unclaimed until
// released, and a release that comes while the attempt is in flight wins
// over its verdict.
func TestWorker_held(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	clock := clocktest.New(start)
	var w *Worker
	var releaseMidway bool
	stream := Filter{Kinds: []string{"pushed"}, ClientID: "rx", Path: []string{"stream_id"}, Values: []string{"s1"}}
	attempts := 0
	kind := Kind{Timeout: time.Second, GiveUpAfter: time.Hour, Send: func(ctx context.Context, j Job) Result {
		attempts++
		if releaseMidway {
			// The receiver is enabled again while this attempt still
			// believes it paused.
			if _, err := Release(ctx, d.Pool, stream); err != nil {
				t.Error(err)
			}
		}
		return Result{Outcome: Held, Error: "held: paused"}
	}}
	w = &Worker{Pool: d.Pool, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kinds: map[string]Kind{"pushed": kind}}
	id := streamRows(t, d, start, "rx", "s1", 1)[0]

	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Fatalf("DeliverDue = %d, want 1", n)
	}
	if !nextAttemptHeld(t, d, id) {
		t.Fatal("the row is not held after a held attempt")
	}
	if st := rowState(t, d, id); st.LastError != "held: paused" || st.Failed || st.Abandoned {
		t.Errorf("held row %+v", st)
	}
	// Past any backoff (MaxBackoff is 5 minutes): still nothing due.
	clock.Advance(50 * time.Minute)
	if n, _ := w.DeliverDue(ctx); n != 0 {
		t.Fatalf("DeliverDue of a held row = %d, want 0", n)
	}

	if _, err := Release(ctx, d.Pool, stream); err != nil {
		t.Fatal(err)
	}
	releaseMidway = true
	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Fatalf("DeliverDue after the release = %d, want 1", n)
	}
	if nextAttemptHeld(t, d, id) {
		t.Fatal("a hold decided before a release outlived it")
	}
	releaseMidway = false
	// Held once more, past GiveUpAfter: abandoned rather than held.
	clock.Advance(time.Hour)
	if n, _ := w.DeliverDue(ctx); n != 1 {
		t.Fatalf("DeliverDue = %d, want the released row", n)
	}
	if st := rowState(t, d, id); !st.Abandoned || attempts != 3 {
		t.Errorf("row %+v after %d attempts, want abandoned on the third", st, attempts)
	}
}
