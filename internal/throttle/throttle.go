// Package throttle slows down guessing. It counts failures per key (an
// account, a client address, a second factor) in PostgreSQL, so every
// instance sees the same counts, and answers how long a key must wait.
//
// Delays grow exponentially after a few free failures and are capped, and the
// count decays once a window passes without failures: an attacker who knows
// a victim's email can slow sign-ins to that account, but cannot lock the
// victim out for longer than the cap.
//
// A guess is either reserved before it is judged (Reserve: the attempt is
// counted as a failure atomically, before any hashing, so N concurrent
// guesses see N attempts, and a success gives it back with Reset), or
// checked before and counted after (Check, then Fail) where counting
// successes in flight would punish honest traffic, such as the per-address
// key that a whole office behind one NAT shares.
//
// Sign-in steps read and write it in round trips they make anyway: they
// queue the reservation, check, failure or reset in the unit of work in
// their context (db.Unit), and the unit sends them with its other
// statements.
package throttle

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
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
	var c *Check
	err := db.Pipelined(ctx, l.Pool, func(ctx context.Context) error {
		c = l.QueueCheck(ctx, keys...)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("throttle: wait: %w", err)
	}
	return c.Wait(), nil
}

// Check is the throttle state of some keys, read by QueueCheck in a round
// trip the caller makes anyway. Its methods are valid once the unit has
// sent it.
type Check struct {
	l     *Limiter
	until *time.Time // the latest blocked_until among the keys
	// recorded are the keys that have a row: the only ones a success has
	// failures to forget.
	recorded []string
}

// QueueCheck queues in the unit in ctx the read that Wait makes, for a
// caller that sends it together with its own statements. The answer is in
// the returned Check once the unit has sent it.
func (l *Limiter) QueueCheck(ctx context.Context, keys ...string) *Check {
	c := &Check{l: l}
	unit(ctx).Queue(`SELECT max(blocked_until), coalesce(array_agg(key), '{}') FROM throttle WHERE key = ANY($1)`, keys).
		Row(func(row pgx.Row) error {
			if err := row.Scan(&c.until, &c.recorded); err != nil {
				return fmt.Errorf("throttle: check: %w", err)
			}
			return nil
		})
	return c
}

// Wait is Limiter.Wait's answer for the keys checked.
func (c *Check) Wait() time.Duration {
	if c.until == nil {
		return 0
	}
	if d := c.until.Sub(c.l.Now()); d > 0 {
		return d.Round(time.Second) + time.Second/2
	}
	return 0
}

// QueueReset queues in the unit in ctx the Reset of those of keys that had
// failures when checked, and nothing when none had: the common success
// then costs no write at all.
func (c *Check) QueueReset(ctx context.Context, keys ...string) {
	var failed []string
	for _, k := range keys {
		if slices.Contains(c.recorded, k) {
			failed = append(failed, k)
		}
	}
	if len(failed) > 0 {
		c.l.QueueReset(ctx, failed...)
	}
}

// Fail records one failure for each key and sets its next delay.
func (l *Limiter) Fail(ctx context.Context, keys ...string) error {
	err := db.Pipelined(ctx, l.Pool, func(ctx context.Context) error {
		l.QueueFail(ctx, keys...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("throttle: fail: %w", err)
	}
	return nil
}

// QueueFail queues in the unit in ctx what Fail writes, for a caller that
// sends it with its own statements. In one unit, the two statements run in
// one transaction: the second sees the counts the first wrote, not a
// concurrent request's.
func (l *Limiter) QueueFail(ctx context.Context, keys ...string) {
	u := unit(ctx)
	// Sorted, so that requests failing several keys lock their rows in one
	// order and never deadlock; without repeats, which one INSERT cannot
	// update twice.
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	now := l.Now()
	// The count restarts when the last failure is older than the window.
	// The cut-off is computed here rather than as an interval literal:
	// PostgreSQL does not parse every unit time.Duration prints ("µs").
	u.Queue(`
		INSERT INTO throttle AS t (key, failures, last_failure_at, blocked_until)
		SELECT key, 1, $2, $2 FROM unnest($1::text[]) AS key
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN t.last_failure_at < $3 THEN 1 ELSE t.failures + 1 END,
			last_failure_at = $2`,
		keys, now, now.Add(-l.Window))
	// Each key's new count picks its delay from the table Go computed, so
	// the policy has one home (delay) and counting costs one round trip. A
	// block already set is never shortened.
	u.Queue(`
		UPDATE throttle SET blocked_until = greatest(blocked_until,
			$2::timestamptz + ($3::bigint[])[least(failures, cardinality($3::bigint[]))] * interval '1 microsecond')
		WHERE key = ANY($1)`,
		keys, now, l.delays())
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

// Reset forgets the failures of keys, after a success (a reservation's
// too).
func (l *Limiter) Reset(ctx context.Context, keys ...string) error {
	err := db.Pipelined(ctx, l.Pool, func(ctx context.Context) error {
		l.QueueReset(ctx, keys...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("throttle: reset: %w", err)
	}
	return nil
}

// QueueReset queues in the unit in ctx what Reset writes.
func (l *Limiter) QueueReset(ctx context.Context, keys ...string) {
	unit(ctx).Queue(`DELETE FROM throttle WHERE key = ANY($1)`, keys)
}

// Reservation is one attempt counted before it is judged (QueueReserve).
// Its methods are valid once the unit has sent it.
type Reservation struct {
	l     *Limiter
	until *time.Time // set when the attempt was refused: blocked until then
	keys  []string
}

// Wait is how long the refused attempt must wait; zero means the attempt
// was reserved (counted) and may be judged.
func (r *Reservation) Wait() time.Duration {
	if r.until == nil {
		return 0
	}
	if d := r.until.Sub(r.l.Now()); d > 0 {
		return d.Round(time.Second) + time.Second/2
	}
	return time.Second / 2 // blocked until a moment that has just passed
}

// QueueSucceeded queues in the unit in ctx what a success owes: the
// reserved keys' failures, this attempt's included, are forgotten.
func (r *Reservation) QueueSucceeded(ctx context.Context) {
	if r.until == nil {
		r.l.QueueReset(ctx, r.keys...)
	}
}

// QueueNotJudged queues in the unit in ctx the return of an attempt that
// was reserved but never judged (there was nothing to check it against):
// it no longer counts.
func (r *Reservation) QueueNotJudged(ctx context.Context) {
	if r.until == nil {
		unit(ctx).Queue(`UPDATE throttle SET failures = greatest(failures - 1, 0) WHERE key = ANY($1)`, r.keys)
	}
}

// QueueReserve queues in the unit in ctx the reservation of one attempt on
// keys, unless any of keys or of checked must wait: then nothing is
// counted and Wait says how long. A reserved attempt counts as a failure
// from the moment the unit commits, before the guess is judged, so
// concurrent guesses each see the ones before them; a success takes it
// back (QueueSucceeded). checked are only checked, never counted (see the
// package comment). One statement (idp_throttle_reserve, migrations/0010)
// does it under the keys' row locks, taken in one order.
func (l *Limiter) QueueReserve(ctx context.Context, keys, checked []string) *Reservation {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	r := &Reservation{l: l, keys: keys}
	now := l.Now()
	unit(ctx).Queue(`SELECT idp_throttle_reserve($1, $2, $3, $4, $5)`, keys, checked, now, now.Add(-l.Window), l.delays()).
		Row(func(row pgx.Row) error {
			if err := row.Scan(&r.until); err != nil {
				return fmt.Errorf("throttle: reserve: %w", err)
			}
			return nil
		})
	return r
}

// Reserve is QueueReserve as a unit of its own, committed before it
// returns: the attempt counts before the caller judges it.
func (l *Limiter) Reserve(ctx context.Context, keys ...string) (*Reservation, error) {
	var r *Reservation
	err := db.Pipelined(ctx, l.Pool, func(ctx context.Context) error {
		r = l.QueueReserve(ctx, keys, nil)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("throttle: reserve: %w", err)
	}
	return r, nil
}

// unit is the unit of work the Queue methods add to; they are written for
// callers that make one, and calling them outside one is a bug.
func unit(ctx context.Context) *db.Unit {
	u, ok := db.From(ctx)
	if !ok {
		panic("throttle: a Queue method called outside a unit of work (db.Tx or db.Pipeline)")
	}
	return u
}

// delays lists, in microseconds, the delay after the 1st, 2nd, … failure,
// up to the first count whose delay is the cap: every later count has the
// cap too, so QueueFail looks any count up in this table.
func (l *Limiter) delays() []int64 {
	var us []int64
	for n := 1; ; n++ {
		d := l.delay(n)
		us = append(us, d.Microseconds())
		// Doubling reaches any cap within 64 steps; the bound also ends
		// the table when Base is zero and the cap is never reached.
		if d >= l.Max || n > l.Free+64 {
			return us
		}
	}
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

// Sweeps are the janitor's for this package's table: a key quiet for a day
// is forgotten (the limiter's window is far shorter).
var Sweeps = []db.Sweep{
	{Table: "throttle", Key: "key", Due: "last_failure_at < $1 AND blocked_until < $1", Keep: 24 * time.Hour, Rare: true},
}
