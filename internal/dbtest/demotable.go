package dbtest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// DemotablePool opens a pool of one connection on url, configured as
// db.Open configures one, whose connections made while readOnly is set turn
// read-only after they were validated as writable: what a pool holds when
// the primary it connected to is demoted. It closes when t ends.
func DemotablePool(t testing.TB, url string, readOnly *atomic.Bool) *pgxpool.Pool {
	t.Helper()
	cfg, err := db.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if !readOnly.Load() {
			return nil
		}
		_, err := c.Exec(ctx, `SET default_transaction_read_only = on`)
		return err
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
