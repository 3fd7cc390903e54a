package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Cleanup deletes rows nobody needs any more, as the packages that own
// them declare (Sweeps), in batches of Batch rows per statement, so no
// statement holds many locks or runs for long. Every instance may run it at
// once: a batch claims its rows with FOR UPDATE SKIP LOCKED, so two
// instances delete disjoint rows and never wait on each other.
type Cleanup struct {
	Pool   *pgxpool.Pool
	Now    func() time.Time
	Sweeps []db.Sweep
	// Batch is the rows per statement (default 1000); MaxBatches bounds
	// the statements per table per call (default 100), so one call is
	// bounded and a backlog drains over several.
	Batch, MaxBatches int
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

// Run deletes the due rows of every sweep, or with full false only of those
// that are not Rare (the busy, indexed tables, which see a row per sign-in,
// so the janitor runs them every time). It returns what it deleted even
// when a later table fails.
func (c *Cleanup) Run(ctx context.Context, full bool) (Deleted, error) {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	batch, maxBatches := c.Batch, c.MaxBatches
	if batch <= 0 {
		batch = 1000
	}
	if maxBatches <= 0 {
		maxBatches = 100
	}
	out := Deleted{}
	for _, sw := range c.Sweeps {
		if sw.Rare && !full {
			continue
		}
		if err := c.sweep(ctx, sw, now.Add(-sw.Keep), batch, maxBatches, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// sweep deletes sw's due rows batch by batch until a batch comes back short
// (nothing more due, or the rest locked by another instance) or maxBatches
// ran.
func (c *Cleanup) sweep(ctx context.Context, sw db.Sweep, cutoff time.Time, batch, maxBatches int, out Deleted) error {
	// Table and column names come from the packages' declarations, never
	// from input.
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[2]s IN (
		SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT $2 FOR UPDATE SKIP LOCKED)`, sw.Table, sw.Key, sw.Due)
	for range maxBatches {
		tag, err := c.Pool.Exec(ctx, q, cutoff, batch)
		if err != nil {
			return fmt.Errorf("ops: clean up %s: %w", sw.Table, err)
		}
		if n := tag.RowsAffected(); n > 0 {
			out[sw.Table] += n
		}
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
	return nil
}
