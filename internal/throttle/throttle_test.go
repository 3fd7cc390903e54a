package throttle_test

import (
	"context"
	"testing"
	"time"

	"sync"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/throttle"
)

func newLimiter(t *testing.T) (*throttle.Limiter, *clocktest.Clock) {
	t.Helper()
	clk := clocktest.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	l := throttle.Default(dbtest.New(t).Pool)
	l.Now = clk.Now
	return l, clk
}

func fail(t *testing.T, l *throttle.Limiter, n int, keys ...string) {
	t.Helper()
	for range n {
		if err := l.Fail(context.Background(), keys...); err != nil {
			t.Fatalf("Fail: %v", err)
		}
	}
}

// wantWait checks Wait against the nominal delay: Wait rounds up to give a
// client a retry time that is never too early, so it may exceed want by less
// than a second.
func wantWait(t *testing.T, l *throttle.Limiter, want time.Duration, keys ...string) {
	t.Helper()
	got, err := l.Wait(context.Background(), keys...)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if want == 0 {
		if got != 0 {
			t.Fatalf("Wait = %v, want 0", got)
		}
		return
	}
	if got < want || got >= want+time.Second {
		t.Fatalf("Wait = %v, want in [%v, %v)", got, want, want+time.Second)
	}
}

func wantFailures(t *testing.T, l *throttle.Limiter, key string, want int) {
	t.Helper()
	got, err := l.Failures(context.Background(), key)
	if err != nil {
		t.Fatalf("Failures: %v", err)
	}
	if got != want {
		t.Fatalf("Failures(%q) = %d, want %d", key, got, want)
	}
}

func TestLimiter_Fail(t *testing.T) {
	const key = "pwd-user:a@example.com"
	ctx := context.Background()

	t.Run("free failures do not delay", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free, key)
		wantWait(t, l, 0, key)
		wantFailures(t, l, key, l.Free)
	})

	t.Run("delay doubles after the free failures", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free, key)
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
			fail(t, l, 1, key)
			wantWait(t, l, want, key)
		}
	})

	t.Run("delay elapses with time", func(t *testing.T) {
		l, clk := newLimiter(t)
		fail(t, l, l.Free+2, key) // 2 s
		clk.Advance(time.Second)
		wantWait(t, l, time.Second, key)
		clk.Advance(time.Second)
		wantWait(t, l, 0, key)
	})

	t.Run("delay is capped", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free+30, key)
		wantWait(t, l, l.Max, key)
	})

	t.Run("count decays after a quiet window", func(t *testing.T) {
		l, clk := newLimiter(t)
		fail(t, l, l.Free+3, key)
		clk.Advance(l.Window + time.Second)
		wantFailures(t, l, key, 0)
		wantWait(t, l, 0, key)
		// The next failure starts a new count: free again, no delay.
		fail(t, l, 1, key)
		wantFailures(t, l, key, 1)
		wantWait(t, l, 0, key)
	})

	t.Run("failures inside the window keep counting", func(t *testing.T) {
		l, clk := newLimiter(t)
		fail(t, l, l.Free, key)
		clk.Advance(l.Window - time.Second)
		fail(t, l, 1, key)
		wantFailures(t, l, key, l.Free+1)
		wantWait(t, l, l.Base, key)
	})

	t.Run("reset forgets failures", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free+3, key)
		if err := l.Reset(ctx, key); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		wantWait(t, l, 0, key)
		wantFailures(t, l, key, 0)
	})

	t.Run("keys are independent and wait takes the worst", func(t *testing.T) {
		l, _ := newLimiter(t)
		const other = "pwd-ip:192.0.2.1"
		fail(t, l, l.Free+1, key)   // 1 s
		fail(t, l, l.Free+3, other) // 4 s
		wantWait(t, l, time.Second, key)
		wantWait(t, l, 4*time.Second, key, other)
		if err := l.Reset(ctx, other); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		wantWait(t, l, time.Second, key, other)
		wantWait(t, l, 0, "unknown-key")
	})

	t.Run("window in microseconds", func(t *testing.T) {
		// A Window that Go prints with a unit PostgreSQL does not parse ("µs")
		// must still work.
		l, clk := newLimiter(t)
		l.Window = 900 * time.Microsecond
		fail(t, l, 2, key)
		wantFailures(t, l, key, 2)
		clk.Advance(time.Millisecond)
		fail(t, l, 1, key)
		wantFailures(t, l, key, 1)
	})
}

// inUnit runs fn in a pipeline and commits it, as a sign-in step does.
func inUnit(t *testing.T, l *throttle.Limiter, fn func(ctx context.Context)) {
	t.Helper()
	err := db.Pipelined(context.Background(), l.Pool, func(ctx context.Context) error {
		fn(ctx)
		return nil
	})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// queued counts what fn queues in a unit of its own (which it then drops).
func queued(l *throttle.Limiter, fn func(ctx context.Context)) int {
	ctx, u := db.Pipeline(context.Background(), l.Pool)
	defer u.Rollback(ctx)
	fn(ctx)
	return u.Mark()
}

func TestLimiter_QueueCheck(t *testing.T) {
	const (
		account = "pwd-user:a@example.com"
		address = "pwd-ip:192.0.2.1"
	)

	t.Run("no failures: no wait, nothing to reset", func(t *testing.T) {
		l, _ := newLimiter(t)
		var c *throttle.Check
		inUnit(t, l, func(ctx context.Context) { c = l.QueueCheck(ctx, account, address) })
		if w := c.Wait(); w != 0 {
			t.Fatalf("Wait = %v, want 0", w)
		}
		if n := queued(l, func(ctx context.Context) { c.QueueReset(ctx, account) }); n != 0 {
			t.Fatalf("QueueReset queued %d statements for a key without failures, want none", n)
		}
	})

	t.Run("answers as Wait does", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free+3, address) // 4 s
		want, err := l.Wait(context.Background(), account, address)
		if err != nil {
			t.Fatal(err)
		}
		var c *throttle.Check
		inUnit(t, l, func(ctx context.Context) { c = l.QueueCheck(ctx, account, address) })
		if got := c.Wait(); got != want || got < 4*time.Second {
			t.Fatalf("Check.Wait = %v, want Wait's %v (at least 4s)", got, want)
		}
	})

	t.Run("reset forgets only the keys asked that had failures", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, 2, account, address)
		var c *throttle.Check
		inUnit(t, l, func(ctx context.Context) { c = l.QueueCheck(ctx, account, address) })
		reset := func(ctx context.Context) { c.QueueReset(ctx, account, "pwd-user:never-failed@example.com") }
		if n := queued(l, reset); n != 1 {
			t.Fatalf("QueueReset queued %d statements, want 1", n)
		}
		inUnit(t, l, reset)
		wantFailures(t, l, account, 0)
		wantFailures(t, l, address, 2)
	})
}

func reserve(t *testing.T, l *throttle.Limiter, keys, checked []string) *throttle.Reservation {
	t.Helper()
	var r *throttle.Reservation
	inUnit(t, l, func(ctx context.Context) { r = l.QueueReserve(ctx, keys, checked) })
	return r
}

func TestLimiter_Reserve(t *testing.T) {
	const (
		account = "pwd-user:a@example.com"
		address = "pwd-ip:192.0.2.1"
	)
	keys := []string{account}

	t.Run("an attempt counts before it is judged", func(t *testing.T) {
		l, _ := newLimiter(t)
		if r := reserve(t, l, keys, nil); r.Wait() != 0 {
			t.Fatalf("Wait = %v, want 0 (reserved)", r.Wait())
		}
		wantFailures(t, l, account, 1)
	})

	t.Run("the delay follows the reserved count", func(t *testing.T) {
		l, _ := newLimiter(t)
		for i := range l.Free + 1 {
			if r := reserve(t, l, keys, nil); r.Wait() != 0 {
				t.Fatalf("attempt %d refused (Wait %v); the first %d are free and the next one is judged", i+1, r.Wait(), l.Free+1)
			}
		}
		r := reserve(t, l, keys, nil)
		if r.Wait() < l.Base {
			t.Fatalf("Wait = %v after %d reserved attempts, want at least %v", r.Wait(), l.Free+1, l.Base)
		}
		wantFailures(t, l, account, l.Free+1) // the refused one is not counted
	})

	t.Run("a success forgets the failures, its own included", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, 2, account)
		r := reserve(t, l, keys, nil)
		inUnit(t, l, r.QueueSucceeded)
		wantFailures(t, l, account, 0)
	})

	t.Run("an attempt never judged is given back", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, 2, account)
		r := reserve(t, l, keys, nil)
		wantFailures(t, l, account, 3)
		inUnit(t, l, r.QueueNotJudged)
		wantFailures(t, l, account, 2)
	})

	t.Run("a checked key blocks but is not counted", func(t *testing.T) {
		l, _ := newLimiter(t)
		if r := reserve(t, l, keys, []string{address}); r.Wait() != 0 {
			t.Fatalf("Wait = %v, want 0", r.Wait())
		}
		wantFailures(t, l, address, 0)
		fail(t, l, l.Free+1, address)
		r := reserve(t, l, keys, []string{address})
		if r.Wait() < l.Base {
			t.Fatalf("Wait = %v with the address blocked, want at least %v", r.Wait(), l.Base)
		}
		wantFailures(t, l, account, 1) // the refused attempt counted nowhere
	})

	t.Run("concurrent guesses see each other", func(t *testing.T) {
		// The hole this closes: guesses checked before any failure was
		// written all passed the throttle. Forty at once may judge only as
		// many as the policy allows one after the other.
		l, _ := newLimiter(t)
		const n = 40
		reserved := make(chan bool, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r, err := l.Reserve(context.Background(), account)
				if err != nil {
					t.Error(err)
					return
				}
				reserved <- r.Wait() == 0
			})
		}
		wg.Wait()
		close(reserved)
		judged := 0
		for ok := range reserved {
			if ok {
				judged++
			}
		}
		if judged != l.Free+1 {
			t.Fatalf("%d of %d concurrent guesses were reserved, want %d", judged, n, l.Free+1)
		}
		wantFailures(t, l, account, l.Free+1)
	})
}

func TestLimiter_FailSeveralKeys(t *testing.T) {
	l, _ := newLimiter(t)
	const a, b = "pwd-user:a@example.com", "pwd-ip:192.0.2.1"
	// Given in either order, and a key given twice counts once.
	fail(t, l, l.Free, a, b)
	fail(t, l, 1, b, a, b)
	wantFailures(t, l, a, l.Free+1)
	wantFailures(t, l, b, l.Free+1)
	wantWait(t, l, l.Base, a)
	wantWait(t, l, l.Base, b)
}

func TestLimiter_FailConcurrently(t *testing.T) {
	// Every failure counts, and the delay follows the final count, however
	// the requests interleave.
	l, _ := newLimiter(t)
	const n = 8
	const a, b = "pwd-user:a@example.com", "pwd-ip:192.0.2.1"
	errs := make(chan error, n)
	for i := range n {
		go func() {
			if i%2 == 0 {
				errs <- l.Fail(context.Background(), a, b)
			} else {
				errs <- l.Fail(context.Background(), b, a)
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Fail: %v", err)
		}
	}
	wantFailures(t, l, a, n)
	wantFailures(t, l, b, n)
	wantWait(t, l, 16*time.Second, a, b) // 8 failures: the 5th past the free ones
}
