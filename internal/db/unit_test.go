package db_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// unitPool is a pool on a fresh database with a table t (id, v), whose
// round trips are counted.
func unitPool(t *testing.T) (*pgxpool.Pool, *dbtest.RoundTrips) {
	t.Helper()
	d := dbtest.New(t)
	if _, err := d.Pool.Exec(t.Context(), `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return dbtest.TracedPool(t, d.URL)
}

func rows(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	r, err := pool.Query(t.Context(), `SELECT v FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func want(t *testing.T, pool *pgxpool.Pool, vs ...string) {
	t.Helper()
	if got := strings.Join(rows(t, pool), ","); got != strings.Join(vs, ",") {
		t.Fatalf("rows = %q, want %q", got, strings.Join(vs, ","))
	}
}

var errStop = errors.New("stop")

func TestTx(t *testing.T) {
	t.Run("commits when fn returns nil", func(t *testing.T) {
		pool, _ := unitPool(t)
		err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
			_, err := db.Conn(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (1, 'a')`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want(t, pool, "a")
	})

	t.Run("rolls back when fn fails", func(t *testing.T) {
		pool, _ := unitPool(t)
		err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
			if _, err := db.Conn(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (1, 'a')`); err != nil {
				return err
			}
			u, _ := db.From(ctx)
			u.Queue(`INSERT INTO t VALUES (2, 'b')`)
			return errStop
		})
		if !errors.Is(err, errStop) {
			t.Fatalf("err = %v, want fn's", err)
		}
		want(t, pool)
		if s := pool.Stat(); s.AcquiredConns() != 0 {
			t.Errorf("%d connections still acquired after the rollback", s.AcquiredConns())
		}
	})

	t.Run("BEGIN and COMMIT travel with the statements", func(t *testing.T) {
		// Two batches in a transaction: two round trips, not four.
		pool, trips := unitPool(t)
		var seen int
		n := trips.Count(func() {
			err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
				u, _ := db.From(ctx)
				u.Queue(`INSERT INTO t VALUES (1, 'a')`)
				u.Queue(`SELECT count(*) FROM t`).Row(func(r pgx.Row) error { return r.Scan(&seen) })
				if err := u.Send(ctx); err != nil {
					return err
				}
				u.Queue(`INSERT INTO t VALUES (2, 'b')`)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		if n != 2 {
			t.Errorf("%d round trips, want 2", n)
		}
		if seen != 1 {
			t.Errorf("a read queued after a write saw %d rows, want 1: statements run in order", seen)
		}
		want(t, pool, "a", "b")
	})

	t.Run("a read sends what waits in the same round trip", func(t *testing.T) {
		pool, trips := unitPool(t)
		n := trips.Count(func() {
			err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
				u, _ := db.From(ctx)
				u.Queue(`INSERT INTO t VALUES (1, 'a')`)
				var v string
				if err := db.Conn(ctx, pool).QueryRow(ctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil || v != "a" {
					t.Errorf("read behind a queued write = %q, %v; want a", v, err)
				}
				rs, err := db.Conn(ctx, pool).Query(ctx, `SELECT v FROM t`)
				if err != nil {
					return err
				}
				got, err := pgx.CollectRows(rs, pgx.RowTo[string])
				if err != nil || len(got) != 1 {
					t.Errorf("Query = %v, %v", got, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		if n != 3 { // BEGIN+INSERT+SELECT, SELECT, COMMIT
			t.Errorf("%d round trips, want 3", n)
		}
	})

	t.Run("nothing sent, nothing to commit", func(t *testing.T) {
		pool, trips := unitPool(t)
		if n := trips.Count(func() {
			if err := db.Tx(t.Context(), pool, func(ctx context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%d round trips for an empty transaction, want 0", n)
		}
	})

	t.Run("a failed statement whose error was ignored fails the commit", func(t *testing.T) {
		pool, _ := unitPool(t)
		err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
			q := db.Conn(ctx, pool)
			if _, err := q.Exec(ctx, `INSERT INTO t VALUES (1, 'a')`); err != nil {
				return err
			}
			q.Exec(ctx, `INSERT INTO t VALUES (1, 'duplicate')`) //nolint:errcheck // ignored on purpose
			return nil
		})
		if err == nil {
			t.Fatal("commit of an aborted transaction reported success")
		}
		want(t, pool)
	})

	t.Run("a queued statement's error surfaces at the commit, mapped", func(t *testing.T) {
		pool, _ := unitPool(t)
		errMapped := errors.New("mapped")
		err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
			u, _ := db.From(ctx)
			u.Queue(`INSERT INTO t VALUES (1, 'a')`)
			u.Queue(`SELECT idp_assert(false, 'no')`).MapErr(func(err error) error {
				if db.IsAssertFailure(err) {
					return errMapped
				}
				return err
			})
			return nil
		})
		if !errors.Is(err, errMapped) {
			t.Fatalf("err = %v, want the statement's mapped error", err)
		}
		want(t, pool)
	})

	t.Run("joins the transaction in ctx", func(t *testing.T) {
		pool, _ := unitPool(t)
		err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
			outer, _ := db.From(ctx)
			if err := db.Tx(ctx, pool, func(ctx context.Context) error {
				inner, _ := db.From(ctx)
				if inner != outer {
					t.Error("the inner Tx made a unit of its own")
				}
				inner.Queue(`INSERT INTO t VALUES (1, 'a')`)
				return nil
			}); err != nil {
				return err
			}
			return errStop // the outer one decides
		})
		if !errors.Is(err, errStop) {
			t.Fatal(err)
		}
		want(t, pool)
	})

	t.Run("not inside a pipeline", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		defer u.Rollback(ctx)
		if err := db.Tx(ctx, pool, func(context.Context) error { return nil }); err == nil {
			t.Fatal("a transaction joined a pipeline")
		}
	})
}

func TestPipeline(t *testing.T) {
	t.Run("writes wait for the commit, reads do not", func(t *testing.T) {
		pool, trips := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		u.Queue(`INSERT INTO t VALUES (1, 'a')`)
		u.Queue(`INSERT INTO t VALUES (2, 'b')`)
		var n int
		if err := db.Conn(ctx, pool).QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("a read in the pipeline saw %d rows (%v), want 0: writes wait", n, err)
		}
		if got := trips.Count(func() {
			if err := u.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}); got != 1 {
			t.Errorf("commit took %d round trips, want 1", got)
		}
		want(t, pool, "a", "b")
	})

	t.Run("all or none", func(t *testing.T) {
		pool, _ := unitPool(t)
		errMapped := errors.New("the code is used")
		ctx, u := db.Pipeline(t.Context(), pool)
		u.Queue(`INSERT INTO t VALUES (1, 'a')`)
		u.Queue(`SELECT idp_assert(false, 'used')`).MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return errMapped
			}
			return err
		})
		u.Queue(`INSERT INTO t VALUES (2, 'b')`)
		if err := u.Commit(ctx); !errors.Is(err, errMapped) {
			t.Fatalf("Commit = %v, want the failed statement's mapped error", err)
		}
		want(t, pool)
	})

	t.Run("results are handed on in order", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		var tag pgconn.CommandTag
		var got []string
		u.Queue(`INSERT INTO t VALUES (1, 'a'), (2, 'b')`).Tag(func(c pgconn.CommandTag) error { tag = c; return nil })
		u.Queue(`SELECT v FROM t ORDER BY id`).Rows(func(r pgx.Rows) error {
			var err error
			got, err = pgx.CollectRows(r, pgx.RowTo[string])
			return err
		})
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != 2 || strings.Join(got, ",") != "a,b" {
			t.Errorf("tag %v, rows %v; want 2 inserted and a,b read", tag, got)
		}
	})

	t.Run("commit again with what is queued after", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		u.Queue(`INSERT INTO t VALUES (1, 'a')`)
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		u.Queue(`INSERT INTO t VALUES (2, 'b')`)
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, pool, "a", "b")
	})

	t.Run("a statement absorbed by a later one is left out", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		q := u.Queue(`INSERT INTO t VALUES (1, 'absorbed')`)
		q.AbsorbedBy(u.Queue(`INSERT INTO t VALUES (2, 'absorbing')`))
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, pool, "absorbing")
	})

	t.Run("an absorbed statement goes out when the later one is discarded", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		q := u.Queue(`INSERT INTO t VALUES (1, 'absorbed')`)
		mark := u.Mark()
		q.AbsorbedBy(u.Queue(`INSERT INTO t VALUES (2, 'absorbing')`))
		u.Discard(mark)
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, pool, "absorbed")
	})

	t.Run("mark and discard, as fosite's rollback", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		u.Queue(`INSERT INTO t VALUES (1, 'a')`)
		mark := u.Mark()
		q := u.Queue(`INSERT INTO t VALUES (2, 'b')`)
		if !u.Waits(q) {
			t.Error("Waits = false for a statement still queued")
		}
		u.Discard(mark)
		if u.Waits(q) {
			t.Error("Waits = true for a discarded statement")
		}
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, pool, "a")
	})

	t.Run("rollback drops what waits", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		u.Queue(`INSERT INTO t VALUES (1, 'a')`)
		u.Rollback(ctx)
		if err := u.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, pool)
	})

	t.Run("a write cannot run now", func(t *testing.T) {
		pool, _ := unitPool(t)
		ctx, u := db.Pipeline(t.Context(), pool)
		if _, err := u.Exec(ctx, `INSERT INTO t VALUES (1, 'a')`); err == nil {
			t.Fatal("Exec in a pipeline ran")
		}
		want(t, pool)
	})
}

// TestCommitAsync: synchronous_commit is off for the pipeline's
// transaction only, never for the connection that later serves someone
// else; a transaction's commit is always durable.
func TestCommitAsync(t *testing.T) {
	pool, _ := unitPool(t)
	var inside string
	ctx, u := db.Pipeline(t.Context(), pool)
	u.Queue(`INSERT INTO t VALUES (1, 'a')`)
	u.Queue(`SELECT current_setting('synchronous_commit')`).Row(func(r pgx.Row) error { return r.Scan(&inside) })
	if err := u.CommitAsync(ctx); err != nil {
		t.Fatal(err)
	}
	if inside != "off" {
		t.Errorf("synchronous_commit in the pipeline = %q, want off", inside)
	}
	want(t, pool, "a")
	var after string
	if err := pool.QueryRow(t.Context(), `SELECT current_setting('synchronous_commit')`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "on" {
		t.Errorf("synchronous_commit after the pipeline = %q, want on", after)
	}
	err := db.Tx(t.Context(), pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		return u.CommitAsync(ctx)
	})
	if err == nil {
		t.Error("CommitAsync of a transaction succeeded; a transaction's commit is durable")
	}
}

// TestParseConfig_PoolSize: the pool is sized for concurrent requests
// unless the URL says otherwise.
func TestParseConfig_PoolSize(t *testing.T) {
	for url, want := range map[string]int32{
		"postgres://u@db.example/idp":                    db.DefaultMaxConns,
		"postgres://u@db.example/idp?pool_max_conns=7":   7,
		"postgres://u@db.example/idp?sslmode=disable":    db.DefaultMaxConns,
		"postgres://u@db.example/idp?pool_max_conns=100": 100,
	} {
		cfg, err := db.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MaxConns != want {
			t.Errorf("%s: MaxConns = %d, want %d", url, cfg.MaxConns, want)
		}
	}
}
