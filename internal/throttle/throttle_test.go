package throttle_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/clocktest"
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

func send(t *testing.T, l *throttle.Limiter, b *pgx.Batch) {
	t.Helper()
	if err := l.Pool.SendBatch(context.Background(), b).Close(); err != nil {
		t.Fatalf("send batch: %v", err)
	}
}

func TestLimiter_QueueCheck(t *testing.T) {
	const (
		account = "pwd-user:a@example.com"
		address = "pwd-ip:192.0.2.1"
	)

	t.Run("no failures: no wait, nothing to reset", func(t *testing.T) {
		l, _ := newLimiter(t)
		b := &pgx.Batch{}
		c := l.QueueCheck(b, account, address)
		send(t, l, b)
		if w := c.Wait(); w != 0 {
			t.Fatalf("Wait = %v, want 0", w)
		}
		reset := &pgx.Batch{}
		c.QueueReset(reset, account)
		if reset.Len() != 0 {
			t.Fatalf("QueueReset queued %d statements for a key without failures, want none", reset.Len())
		}
	})

	t.Run("answers as Wait does", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, l.Free+3, address) // 4 s
		want, err := l.Wait(context.Background(), account, address)
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		c := l.QueueCheck(b, account, address)
		send(t, l, b)
		if got := c.Wait(); got != want || got < 4*time.Second {
			t.Fatalf("Check.Wait = %v, want Wait's %v (at least 4s)", got, want)
		}
	})

	t.Run("reset forgets only the keys asked that had failures", func(t *testing.T) {
		l, _ := newLimiter(t)
		fail(t, l, 2, account, address)
		b := &pgx.Batch{}
		c := l.QueueCheck(b, account, address)
		send(t, l, b)
		reset := &pgx.Batch{}
		c.QueueReset(reset, account, "pwd-user:never-failed@example.com")
		if reset.Len() != 1 {
			t.Fatalf("QueueReset queued %d statements, want 1", reset.Len())
		}
		send(t, l, reset)
		wantFailures(t, l, account, 0)
		wantFailures(t, l, address, 2)
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
