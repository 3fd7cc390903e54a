package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Cleanup deletes rows nobody needs any more, in batches of Batch rows per
// statement, so no statement holds many locks or runs for long. Every
// instance may run it at once: a batch claims its rows with FOR UPDATE SKIP
// LOCKED, so two instances delete disjoint rows and never wait on each
// other.
type Cleanup struct {
	Pool *pgxpool.Pool
	Now  func() time.Time
	// Batch is the rows per statement (default 1000); MaxBatches bounds
	// the statements per table per call (default 100), so one call is
	// bounded and a backlog drains over several.
	Batch, MaxBatches int
	// TokenGrace is how long after expiry codes and tokens are kept
	// (default 1 h): an instance whose clock runs behind still finds a
	// token it considers live, and a replayed code still meets its
	// invalidated row (fosite then revokes the tokens it issued).
	TokenGrace time.Duration
	// ThrottleAge is how long after its last failure a throttle row is
	// kept (default 24 h); the limiter's window is far shorter.
	ThrottleAge time.Duration
	// DeliveredAge is how long delivered logout notifications are kept
	// (default 7 days). Failed and abandoned ones are kept until an
	// administrator deals with them.
	DeliveredAge time.Duration
}

// Deleted counts deleted rows by table.
type Deleted map[string]int64

// Total is the number of rows deleted.
func (d Deleted) Total() int64 {
	var n int64
	for _, v := range d {
		n += v
	}
	return n
}

// sweepable is a table the janitor deletes from: key is its primary key,
// due the condition (with $1 the cut-off) that makes a row deletable.
type sweepable struct {
	table, key, due string
}

// Tables swept by Expired; codes and PKCE and OpenID Connect sessions live
// as long as their code. Rows with no expiry are never touched.
var expiring = []sweepable{
	{"oauth_authorize_codes", "signature_hash", "expires_at < $1"},
	{"oauth_access_tokens", "signature_hash", "expires_at < $1"},
	{"oauth_refresh_tokens", "signature_hash", "expires_at < $1"},
	{"oauth_client_assertion_jti", "jti", "expires_at < $1"},
	{"passkey_challenges", "challenge_hash", "expires_at < $1"},
}

// Tables swept by Records.
var (
	throttleRows  = sweepable{"throttle", "key", "last_failure_at < $1 AND blocked_until < $1"}
	deliveredRows = sweepable{"outbox", "id", "delivered_at < $1"}
	loginFlows    = sweepable{"login_flows", "id_hash", "expires_at < $1"}
)

func (c *Cleanup) defaults() (now time.Time, batch, maxBatches int) {
	now = time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	batch, maxBatches = c.Batch, c.MaxBatches
	if batch <= 0 {
		batch = 1000
	}
	if maxBatches <= 0 {
		maxBatches = 100
	}
	return now, batch, maxBatches
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Expired deletes authorization codes, PKCE and OpenID Connect sessions,
// access and refresh tokens and client assertion JTIs that expired more
// than TokenGrace ago, and sign-in flows that expired. These tables see a
// row per sign-in, so the janitor runs this every sweep. It returns what it
// deleted even when a later table fails.
func (c *Cleanup) Expired(ctx context.Context) (Deleted, error) {
	now, batch, maxBatches := c.defaults()
	out := Deleted{}
	cutoff := now.Add(-orDefault(c.TokenGrace, time.Hour))
	for _, t := range expiring {
		if err := c.sweep(ctx, t, cutoff, batch, maxBatches, out); err != nil {
			return out, err
		}
	}
	// A flow is dead the moment it expires: nothing reads it after.
	if err := c.sweep(ctx, loginFlows, now, batch, maxBatches, out); err != nil {
		return out, err
	}
	return out, nil
}

// Records deletes throttle rows quiet for ThrottleAge and logout
// notifications delivered more than DeliveredAge ago. Neither table has an
// index on these columns, so the janitor runs this less often than Expired.
func (c *Cleanup) Records(ctx context.Context) (Deleted, error) {
	now, batch, maxBatches := c.defaults()
	out := Deleted{}
	if err := c.sweep(ctx, throttleRows, now.Add(-orDefault(c.ThrottleAge, 24*time.Hour)), batch, maxBatches, out); err != nil {
		return out, err
	}
	if err := c.sweep(ctx, deliveredRows, now.Add(-orDefault(c.DeliveredAge, 7*24*time.Hour)), batch, maxBatches, out); err != nil {
		return out, err
	}
	return out, nil
}

// sweep deletes t's due rows batch by batch until a batch comes back short
// (nothing more due, or the rest locked by another instance) or maxBatches
// ran.
func (c *Cleanup) sweep(ctx context.Context, t sweepable, cutoff time.Time, batch, maxBatches int, out Deleted) error {
	// Table and column names come from the fixed lists above, never from
	// input.
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[2]s IN (
		SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT $2 FOR UPDATE SKIP LOCKED)`, t.table, t.key, t.due)
	for range maxBatches {
		tag, err := c.Pool.Exec(ctx, q, cutoff, batch)
		if err != nil {
			return fmt.Errorf("ops: clean up %s: %w", t.table, err)
		}
		if n := tag.RowsAffected(); n > 0 {
			out[t.table] += n
		}
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
	return nil
}
