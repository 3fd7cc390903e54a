package db_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// TestCheckWritable: a pool whose connections have become read-only (as
// when the primary they were made to is demoted) is told so, and let go of
// them; a pool whose new connections would be read-only never opens one.
func TestCheckWritable(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	if err := db.CheckWritable(ctx, d.Pool); err != nil {
		t.Fatalf("a writable database: %v", err)
	}

	t.Run("connections that became read-only are closed", func(t *testing.T) {
		var readOnly atomic.Bool
		readOnly.Store(true)
		pool := dbtest.DemotablePool(t, d.URL, &readOnly)
		var before uint32
		if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if err := db.CheckWritable(ctx, pool); !errors.Is(err, db.ErrReadOnly) {
			t.Fatalf("CheckWritable = %v, want ErrReadOnly", err)
		}
		readOnly.Store(false) // the primary is back
		var after uint32
		if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if after == before {
			t.Fatal("the read-only connection is still in the pool")
		}
		if err := db.CheckWritable(ctx, pool); err != nil {
			t.Fatalf("after the reset: %v", err)
		}
	})

	t.Run("new connections to a read-only server are refused", func(t *testing.T) {
		cfg, err := db.ParseConfig(d.URL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if err := db.CheckWritable(ctx, pool); !errors.Is(err, db.ErrReadOnly) {
			t.Fatalf("CheckWritable = %v, want ErrReadOnly", err)
		}
		if _, err := pool.Exec(ctx, `SELECT 1`); !errors.Is(err, pgconn.ErrReadOnlyConnection) {
			t.Errorf("a query on a read-only server: %v, want the connection refused as read-only", err)
		}
		if n := pool.Stat().TotalConns(); n != 0 {
			t.Errorf("the pool holds %d connections, want none", n)
		}
	})
}
