package throttle_test

import (
	"context"
	"testing"
	"time"

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
