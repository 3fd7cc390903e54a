package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WriteBehind collects the writes of one request whose results nobody reads
// and sends them in one round trip. An authorization that issues a code
// writes the code, its PKCE and OpenID Connect sessions and the app's client
// session: four round trips one after the other, or one.
//
// The statements go out as one pipelined batch with a single Sync, which
// PostgreSQL runs as one implicit transaction: all of them or none. A
// statement that must hold for the others to be valid (the code is still
// unused) is written to raise an error when it does not (IsAssertFailure),
// and that error rolls the whole batch back.
//
// A WriteBehind belongs to one request and is not safe for concurrent use.
type WriteBehind struct {
	pool  *pgxpool.Pool
	stmts []queued
}

type queued struct {
	sql    string
	args   []any
	mapErr func(error) error
}

type writeBehindKey struct{}

// WithWriteBehind returns a context in which Exec queues instead of running.
// The caller must Flush before it answers, on success and on failure alike.
func WithWriteBehind(ctx context.Context, pool *pgxpool.Pool) (context.Context, *WriteBehind) {
	w := &WriteBehind{pool: pool}
	return context.WithValue(ctx, writeBehindKey{}, w), w
}

// WriteBehindFrom returns the WriteBehind in ctx, if any. Inside a
// transaction (WithTx) there is none: statements there run at once.
func WriteBehindFrom(ctx context.Context) (*WriteBehind, bool) {
	if _, inTx := TxFrom(ctx); inTx {
		return nil, false
	}
	w, ok := ctx.Value(writeBehindKey{}).(*WriteBehind)
	return w, ok
}

// Exec runs a write whose result the caller does not read: at once, or,
// when ctx carries a WriteBehind, at its next Flush, which then reports any
// error. mapErr, if not nil, translates this statement's error (Assert
// failures into the caller's sentinel errors).
func Exec(ctx context.Context, pool *pgxpool.Pool, mapErr func(error) error, sql string, args ...any) error {
	if w, ok := WriteBehindFrom(ctx); ok {
		w.stmts = append(w.stmts, queued{sql: sql, args: args, mapErr: mapErr})
		return nil
	}
	if _, err := Conn(ctx, pool).Exec(ctx, sql, args...); err != nil {
		if mapErr != nil {
			return mapErr(err)
		}
		return err
	}
	return nil
}

// Len is the number of statements waiting.
func (w *WriteBehind) Len() int { return len(w.stmts) }

// Discard drops the statements queued after the first n, as a rollback
// drops a transaction's writes.
func (w *WriteBehind) Discard(n int) {
	if n < len(w.stmts) {
		w.stmts = w.stmts[:n]
	}
}

// Flush sends the waiting statements in one round trip, all or none, and
// returns the first statement's error. It does nothing when none wait.
func (w *WriteBehind) Flush(ctx context.Context) error {
	return w.flush(ctx, false)
}

// FlushAsyncCommit is Flush with synchronous_commit off for this one
// transaction: it returns once PostgreSQL has committed, without waiting
// for the commit to reach the disk (the WAL writer does that within a few
// hundred milliseconds). Use it only for writes whose loss in a crash of
// the database costs a person at most signing in again, and that nothing
// durable depends on without a synchronous commit of its own after them:
// WAL is flushed in order, so that later commit makes them durable too.
func (w *WriteBehind) FlushAsyncCommit(ctx context.Context) error {
	return w.flush(ctx, true)
}

func (w *WriteBehind) flush(ctx context.Context, async bool) error {
	stmts := w.stmts
	w.stmts = nil
	if len(stmts) == 0 {
		return nil
	}
	if len(stmts) == 1 && !async {
		// No batch for one statement: the same round trip, less work.
		_, err := w.pool.Exec(ctx, stmts[0].sql, stmts[0].args...)
		return stmts[0].fail(err)
	}
	b := &pgx.Batch{}
	if async {
		queueAsyncCommit(b)
	}
	for _, s := range stmts {
		b.Queue(s.sql, s.args...)
	}
	br := w.pool.SendBatch(ctx, b)
	var first error
	if async {
		if _, err := br.Exec(); err != nil {
			first = fmt.Errorf("db: write-behind: %w", err)
		}
	}
	for _, s := range stmts {
		if first != nil {
			break // the rest were skipped by the server
		}
		if _, err := br.Exec(); err != nil {
			first = s.fail(err)
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = fmt.Errorf("db: write-behind: %w", err)
	}
	return first
}

// SendAsyncCommit sends b in one round trip as one implicit transaction,
// with synchronous_commit off for it, under the rule of FlushAsyncCommit.
// Inside a transaction in ctx it just sends b there: the setting would
// reach the caller's other writes.
func SendAsyncCommit(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) error {
	if tx, ok := TxFrom(ctx); ok {
		return tx.SendBatch(ctx, b).Close()
	}
	async := &pgx.Batch{}
	queueAsyncCommit(async)
	async.QueuedQueries = append(async.QueuedQueries, b.QueuedQueries...)
	return pool.SendBatch(ctx, async).Close()
}

// queueAsyncCommit turns synchronous_commit off for the rest of the batch's
// implicit transaction; the setting ends with it.
func queueAsyncCommit(b *pgx.Batch) {
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
}

func (s queued) fail(err error) error {
	if err == nil {
		return nil
	}
	if s.mapErr != nil {
		return s.mapErr(err)
	}
	return fmt.Errorf("db: write-behind: %w", err)
}

// IsAssertFailure reports whether err was raised by idp_assert
// (migrations/0006): a statement written as
//
//	SELECT idp_assert(<condition>, 'what failed')
//
// raises SQLSTATE P0001 when its condition is false, which rolls back the
// write-behind batch it is in.
func IsAssertFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "P0001"
}
