// Package throttle slows down guessing. It counts failures per key (an
// account, a client address, a second factor) in PostgreSQL, so every
// instance sees the same counts, and answers how long a key must wait.
//
// Delays grow exponentially after a few free failures and are capped, and the
// count decays once a window passes without failures: an attacker who knows
// a victim's email can slow sign-ins to that account, but cannot lock the
// victim out for longer than the cap.
package throttle

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// Limiter decides delays from failure counts.
type Limiter struct {
	Pool *pgxpool.Pool
	Now  func() time.Time
	// Free failures before any delay.
	Free int
	// Base delay after the first non-free failure; doubles with each one.
	Base time.Duration
	// Max caps the delay.
	Max time.Duration
	// Window after the last failure at which the count resets.
	Window time.Duration
}

// Default is the policy for passwords and second factors: 3 free failures,
// then 1 s, 2 s, 4 s … capped at 5 minutes; forgotten after 15 quiet minutes.
func Default(pool *pgxpool.Pool) *Limiter {
	return &Limiter{Pool: pool, Now: time.Now, Free: 3, Base: time.Second, Max: 5 * time.Minute, Window: 15 * time.Minute}
}

// Wait returns how long the most throttled of keys must still wait (zero
// when none is blocked).
func (l *Limiter) Wait(ctx context.Context, keys ...string) (time.Duration, error) {
	var until *time.Time
	err := db.Conn(ctx, l.Pool).QueryRow(ctx,
		`SELECT max(blocked_until) FROM throttle WHERE key = ANY($1)`, keys).Scan(&until)
	if err != nil {
		return 0, fmt.Errorf("throttle: wait: %w", err)
	}
	if until == nil {
		return 0, nil
	}
	if d := until.Sub(l.Now()); d > 0 {
		return d.Round(time.Second) + time.Second/2, nil
	}
	return 0, nil
}

// Fail records one failure for each key and sets its next delay.
func (l *Limiter) Fail(ctx context.Context, keys ...string) error {
	now := l.Now()
	for _, key := range keys {
		// The count restarts when the last failure is older than the window.
		// The cut-off is computed here rather than as an interval literal:
		// PostgreSQL does not parse every unit time.Duration prints ("µs").
		// RETURNING reads the count this statement wrote, not a concurrent one.
		var failures int
		err := db.Conn(ctx, l.Pool).QueryRow(ctx, `
			INSERT INTO throttle AS t (key, failures, last_failure_at, blocked_until)
			VALUES ($1, 1, $2, $2)
			ON CONFLICT (key) DO UPDATE SET
				failures = CASE WHEN t.last_failure_at < $3 THEN 1 ELSE t.failures + 1 END,
				last_failure_at = $2
			RETURNING failures`,
			key, now, now.Add(-l.Window)).Scan(&failures)
		if err != nil {
			return fmt.Errorf("throttle: fail: %w", err)
		}
		if d := l.delay(failures); d > 0 {
			if _, err := db.Conn(ctx, l.Pool).Exec(ctx,
				`UPDATE throttle SET blocked_until = $2 WHERE key = $1`, key, now.Add(d)); err != nil {
				return fmt.Errorf("throttle: fail: %w", err)
			}
		}
	}
	return nil
}

// Failures returns the current failure count of key.
func (l *Limiter) Failures(ctx context.Context, key string) (int, error) {
	var n int
	err := db.Conn(ctx, l.Pool).QueryRow(ctx,
		`SELECT coalesce((SELECT failures FROM throttle WHERE key = $1 AND last_failure_at >= $2), 0)`,
		key, l.Now().Add(-l.Window)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("throttle: failures: %w", err)
	}
	return n, nil
}

// Reset forgets the failures of keys, after a success.
func (l *Limiter) Reset(ctx context.Context, keys ...string) error {
	_, err := db.Conn(ctx, l.Pool).Exec(ctx, `DELETE FROM throttle WHERE key = ANY($1)`, keys)
	if err != nil {
		return fmt.Errorf("throttle: reset: %w", err)
	}
	return nil
}

func (l *Limiter) delay(failures int) time.Duration {
	n := failures - l.Free
	if n <= 0 {
		return 0
	}
	d := l.Base
	for i := 1; i < n && d < l.Max; i++ {
		d *= 2
	}
	return min(d, l.Max)
}
