package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// onePool is a pool of one connection on a fresh database with a table t,
// so a setting left behind by one statement would be seen by the next.
func onePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.New(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(t.Context(), `CREATE TABLE t (n int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return pool
}

func rows(t *testing.T, pool *pgxpool.Pool) []int {
	t.Helper()
	r, err := pool.Query(t.Context(), `SELECT n FROM t ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := pgx.CollectRows(r, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

var errCheck = errors.New("check failed")

func mapAssert(err error) error {
	if db.IsAssertFailure(err) {
		return errCheck
	}
	return err
}

func TestWriteBehind(t *testing.T) {
	t.Run("waits until flushed, then sends all", func(t *testing.T) {
		pool := onePool(t)
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		for _, n := range []int{1, 2, 3} {
			if err := db.Exec(ctx, pool, nil, `INSERT INTO t VALUES ($1)`, n); err != nil {
				t.Fatal(err)
			}
		}
		if got := rows(t, pool); len(got) != 0 || w.Len() != 3 {
			t.Fatalf("before flush: rows %v, %d waiting; want none written, 3 waiting", got, w.Len())
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 3 || w.Len() != 0 {
			t.Errorf("after flush: rows %v, %d waiting; want 3 written, none waiting", got, w.Len())
		}
	})
	t.Run("a failed assert rolls back the whole batch", func(t *testing.T) {
		pool := onePool(t)
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (1)`)
		_ = db.Exec(ctx, pool, mapAssert, `SELECT idp_assert(false, 'test')`)
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (2)`)
		if err := w.Flush(ctx); !errors.Is(err, errCheck) {
			t.Fatalf("flush: %v, want the assert's mapped error", err)
		}
		if got := rows(t, pool); len(got) != 0 {
			t.Errorf("rows %v written by a batch whose assert failed", got)
		}
		if err := w.Flush(ctx); err != nil {
			t.Errorf("flush after a failed flush: %v, want nothing left to send", err)
		}
	})
	t.Run("a true assert lets the batch through", func(t *testing.T) {
		pool := onePool(t)
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		_ = db.Exec(ctx, pool, mapAssert, `SELECT idp_assert(true, 'test')`)
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (1)`)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 1 {
			t.Errorf("rows %v, want [1]", got)
		}
	})
	t.Run("discard drops what was queued after a point", func(t *testing.T) {
		pool := onePool(t)
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (1)`)
		mark := w.Len()
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (2)`)
		w.Discard(mark)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 1 || got[0] != 1 {
			t.Errorf("rows %v, want [1]", got)
		}
	})
	t.Run("async commit is local to its batch", func(t *testing.T) {
		pool := onePool(t)
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		_ = db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (1)`)
		if err := w.FlushAsyncCommit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 1 {
			t.Errorf("rows %v, want [1]", got)
		}
		var setting string
		if err := pool.QueryRow(t.Context(), `SHOW synchronous_commit`).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "on" {
			t.Errorf("synchronous_commit = %q on the same connection after the batch, want on", setting)
		}
	})
	t.Run("SendAsyncCommit: one transaction, setting local to it", func(t *testing.T) {
		pool := onePool(t)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES (1)`)
		b.Queue(`INSERT INTO t VALUES (1)`) // fails: the first must go too
		if err := db.SendAsyncCommit(t.Context(), pool, b); !db.IsUniqueViolation(err) {
			t.Fatalf("err = %v, want the second insert's unique violation", err)
		}
		if got := rows(t, pool); len(got) != 0 {
			t.Errorf("rows %v written by a failed batch", got)
		}
		var setting string
		if err := pool.QueryRow(t.Context(), `SHOW synchronous_commit`).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "on" {
			t.Errorf("synchronous_commit = %q after the batch, want on", setting)
		}
	})
	t.Run("SendAsyncCommit in a transaction leaves its commit alone", func(t *testing.T) {
		pool := onePool(t)
		err := db.InTx(t.Context(), pool, func(ctx context.Context, tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO t VALUES (1)`)
			if err := db.SendAsyncCommit(ctx, pool, b); err != nil {
				return err
			}
			var setting string
			if err := tx.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&setting); err != nil {
				return err
			}
			if setting != "on" {
				t.Errorf("synchronous_commit = %q in the caller's transaction, want on", setting)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 1 {
			t.Errorf("rows %v, want [1]", got)
		}
	})
	t.Run("without a write-behind, or in a transaction, writes run at once", func(t *testing.T) {
		pool := onePool(t)
		if err := db.Exec(t.Context(), pool, nil, `INSERT INTO t VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		ctx, w := db.WithWriteBehind(t.Context(), pool)
		err := db.InTx(ctx, pool, func(ctx context.Context, _ pgx.Tx) error {
			return db.Exec(ctx, pool, nil, `INSERT INTO t VALUES (2)`)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := rows(t, pool); len(got) != 2 || w.Len() != 0 {
			t.Errorf("rows %v, %d waiting; want 2 written, none waiting", got, w.Len())
		}
	})
}
