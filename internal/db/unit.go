package db

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A Unit is one unit of work: statements that commit together or not at
// all. It is the only way the provider writes to PostgreSQL. A Unit travels
// in the context (From), as Hydra carries its transaction, so fosite's
// storage calls join the unit of the request that made them.
//
// A Unit is one of two kinds, and the call site that makes it says which:
//
//   - Tx runs a function in a transaction. Statements run when they are
//     called (Exec, Query, QueryRow on Conn(ctx, pool)) and their errors
//     come back there; statements queued with Queue wait and go out with
//     the next one that runs, or with Send, or with the COMMIT, in one round
//     trip. BEGIN goes out with the first of them, so a transaction of two
//     batches costs two round trips, not four. Tx commits when the function
//     returns nil, and the caller waits for that commit.
//
//   - Pipeline queues every write (Queue) until the caller calls Commit or
//     CommitAsync, which sends them all in one round trip; PostgreSQL runs
//     them as one implicit transaction, all or none, and that call is where
//     every queued statement's error surfaces. Reads do not wait: they run
//     at once on the pool (Conn returns the pool), outside the unit, and do
//     not see its waiting writes. A statement that must hold for the others
//     to be valid (a code still unused, a session still live) is written to
//     raise an error when it does not (IsAssertFailure), and that error
//     rolls the whole unit back.
//
// # Asynchronous commits
//
// A pipeline's CommitAsync commits with synchronous_commit off for its
// implicit transaction: it
// returns once PostgreSQL has committed, without waiting for the commit to
// reach the disk (the WAL writer does that within a few hundred
// milliseconds). The rule for using it: only for writes whose loss in a
// crash of the database costs a person at most signing in again, and that
// nothing durable depends on without a synchronous commit of its own after
// them. WAL is flushed in order, so that later commit makes them durable
// too. The sign-in's flows and new sessions, and the codes the
// authorization endpoint issues (worthless until their exchange commits
// synchronously) follow it; tokens, revocations and changes of accounts
// never use it.
//
// A Unit belongs to one goroutine.
type Unit struct {
	pool     *pgxpool.Pool
	pipeline bool
	queue    []*Queued

	// A transaction's connection, acquired when its first statement is
	// sent, and whether BEGIN has gone out on it.
	conn  *pgxpool.Conn
	begun bool
	done  bool
}

type unitKey struct{}

// From returns the unit ctx carries, if any.
func From(ctx context.Context) (*Unit, bool) {
	u, ok := ctx.Value(unitKey{}).(*Unit)
	return u, ok
}

// Tx runs fn in a transaction and commits it when fn returns nil; an error
// from fn, or from the commit, rolls it back and is returned. Inside fn,
// Conn(ctx, pool) and From(ctx) reach the transaction. When ctx already
// carries a transaction, fn joins it (so domain operations compose) and the
// outer Tx commits. Tx inside a Pipeline is a mistake (the pipeline's
// statements cannot run now) and fails.
func Tx(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context) error) error {
	if outer, ok := From(ctx); ok {
		if outer.pipeline {
			return errors.New("db: a transaction cannot join a pipeline")
		}
		return fn(ctx)
	}
	u := &Unit{pool: pool}
	if err := fn(context.WithValue(ctx, unitKey{}, u)); err != nil {
		u.Rollback(ctx)
		return err
	}
	return u.Commit(ctx)
}

// Pipeline returns a context carrying a new pipelined unit on pool, and the
// unit, which the caller commits (Commit or CommitAsync) before it answers,
// on success and on failure alike, or discards (Rollback). A pipeline
// always starts a unit of its own, whatever ctx carries.
func Pipeline(ctx context.Context, pool *pgxpool.Pool) (context.Context, *Unit) {
	u := &Unit{pool: pool, pipeline: true}
	return context.WithValue(ctx, unitKey{}, u), u
}

// Pipelined runs fn with a pipeline and commits it when fn returns nil:
// for a short piece of work whose statements all go out in one round trip.
func Pipelined(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context) error) error {
	ctx, u := Pipeline(ctx, pool)
	if err := fn(ctx); err != nil {
		u.Rollback(ctx)
		return err
	}
	return u.Commit(ctx)
}

// Conn returns what runs a statement now: the transaction in ctx, or the
// pool (outside any unit, and in a pipeline, whose reads run outside it).
func Conn(ctx context.Context, pool *pgxpool.Pool) Querier {
	if u, ok := From(ctx); ok && !u.pipeline {
		return u
	}
	return pool
}

// Queued is a statement waiting in a unit. Its result is handed to the
// function set with Tag, Row or Rows when the unit sends it, in the order
// statements were queued.
type Queued struct {
	sql    string
	args   []any
	onTag  func(pgconn.CommandTag) error
	onRow  func(pgx.Row) error
	onRows func(pgx.Rows) error
	mapErr func(error) error
	// absorbedBy, queued after this statement, does what it does too.
	absorbedBy *Queued
}

// Tag sets what receives the statement's command tag (rows affected).
func (q *Queued) Tag(fn func(pgconn.CommandTag) error) *Queued { q.onTag = fn; return q }

// Row sets what scans the statement's one row (pgx.ErrNoRows when none).
func (q *Queued) Row(fn func(pgx.Row) error) *Queued { q.onRow = fn; return q }

// Rows sets what reads the statement's rows; it need not close them.
func (q *Queued) Rows(fn func(pgx.Rows) error) *Queued { q.onRows = fn; return q }

// MapErr sets what translates the statement's own error (an assertion's
// failure into the caller's sentinel, say) when the unit sends it.
func (q *Queued) MapErr(fn func(error) error) *Queued { q.mapErr = fn; return q }

// AbsorbedBy says that other, queued after q in the same unit, does all
// that q does: when both go out in one round trip, q is left out, one
// statement fewer for the server to run. When other was discarded (a
// rollback to a mark between them) or has gone out before, q goes out as
// queued. q must have no result to hand on (no Tag, Row or Rows), and what
// runs between q and other must not read what q writes.
func (q *Queued) AbsorbedBy(other *Queued) { q.absorbedBy = other }

// absorb drops from stmts the statements absorbed by a later one among them.
func absorb(stmts []*Queued) []*Queued {
	out := stmts[:0:0]
	for i, s := range stmts {
		if s.absorbedBy != nil && slices.Contains(stmts[i+1:], s.absorbedBy) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (q *Queued) fail(err error) error {
	if q.mapErr != nil {
		return q.mapErr(err)
	}
	return fmt.Errorf("db: %w", err)
}

// Queue adds a statement to the unit. It runs when the unit next sends:
// in a transaction with the next statement that runs now, Send or the
// commit; in a pipeline at Commit. Its error surfaces there.
func (u *Unit) Queue(sql string, args ...any) *Queued {
	q := &Queued{sql: sql, args: args}
	u.queue = append(u.queue, q)
	return q
}

// Mark is the number of statements waiting; Discard(mark) drops those
// queued since, as a rollback to a savepoint would. fosite's own
// transactions nest in a pipeline this way.
func (u *Unit) Mark() int { return len(u.queue) }

// Discard drops the statements queued after mark.
func (u *Unit) Discard(mark int) {
	if mark < len(u.queue) {
		u.queue = u.queue[:mark]
	}
}

// Waits reports whether q is still queued in u: neither sent nor
// discarded.
func (u *Unit) Waits(q *Queued) bool {
	for _, w := range u.queue {
		if w == q {
			return true
		}
	}
	return false
}

// Pipelined reports whether u is a pipeline (writes wait for Commit).
func (u *Unit) Pipelined() bool { return u.pipeline }

// Send sends the waiting statements now, in one round trip, inside the
// transaction. A pipeline has no "now" before its commit; Send on one is
// Commit.
func (u *Unit) Send(ctx context.Context) error {
	if u.pipeline {
		return u.Commit(ctx)
	}
	_, err := u.send(ctx, nil)
	return err
}

// Commit sends what waits and commits. For a transaction that is the end of
// it; a pipeline may be committed again with what is queued after.
func (u *Unit) Commit(ctx context.Context) error { return u.commit(ctx, false) }

// CommitAsync is a pipeline's Commit without waiting for the disk; see
// "Asynchronous commits" above for what may use it. A transaction's commit
// is always durable.
func (u *Unit) CommitAsync(ctx context.Context) error {
	if !u.pipeline {
		return errors.New("db: CommitAsync is for pipelines")
	}
	return u.commit(ctx, true)
}

func (u *Unit) commit(ctx context.Context, async bool) error {
	if u.pipeline {
		return u.sendPipeline(ctx, async)
	}
	if u.done {
		return errors.New("db: commit: the transaction is over")
	}
	defer u.release(ctx)
	if !u.begun && len(u.queue) == 0 {
		return nil // nothing was ever sent: nothing to commit
	}
	end := &Queued{sql: "COMMIT"}
	var tag pgconn.CommandTag
	end.onTag = func(t pgconn.CommandTag) error { tag = t; return nil }
	if _, err := u.send(ctx, end); err != nil {
		return err
	}
	// COMMIT of a transaction an earlier statement aborted answers
	// ROLLBACK without an error: a caller that ignored that statement's
	// error must not believe its writes are in.
	if tag.String() != "COMMIT" {
		return errors.New("db: commit: the transaction was rolled back (a statement in it failed)")
	}
	return nil
}

// Rollback ends the unit without committing: a transaction is rolled back,
// a pipeline's waiting statements are dropped. It never fails the caller:
// the connection of a transaction that cannot be rolled back is closed.
func (u *Unit) Rollback(ctx context.Context) {
	u.queue = nil
	if u.pipeline || u.done {
		return
	}
	u.release(ctx)
}

// release hands the transaction's connection back, rolling back whatever it
// left open (an error left the transaction aborted, or fn failed).
func (u *Unit) release(ctx context.Context) {
	u.done = true
	u.queue = nil
	if u.conn == nil {
		return
	}
	if u.conn.Conn().PgConn().TxStatus() != 'I' {
		if _, err := u.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			// A connection in an unknown state must not go back to the pool.
			u.conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck
		}
	}
	u.conn.Release()
	u.conn = nil
}

// send sends, on the transaction's connection, BEGIN if it has not gone out
// yet, the waiting statements and last (if not nil), in one round trip.
// When last is a bare read (no Tag, Row or Rows), its result is left unread
// in the returned batch, which the caller closes; otherwise the batch is
// closed here.
func (u *Unit) send(ctx context.Context, last *Queued) (pgx.BatchResults, error) {
	if u.done {
		return nil, errors.New("db: the transaction is over")
	}
	stmts := u.queue
	u.queue = nil
	callerReads := last != nil && last.onTag == nil && last.onRow == nil && last.onRows == nil
	if last != nil && !callerReads {
		stmts = append(stmts, last)
	}
	stmts = absorb(stmts)
	if len(stmts) == 0 && !callerReads {
		return nil, nil
	}
	if u.conn == nil {
		c, err := u.pool.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("db: begin: %w", err)
		}
		u.conn = c
	}
	b := &pgx.Batch{}
	if !u.begun {
		b.Queue("BEGIN")
	}
	for _, s := range stmts {
		b.Queue(s.sql, s.args...)
	}
	if callerReads {
		b.Queue(last.sql, last.args...)
	}
	br := u.conn.SendBatch(ctx, b)
	if !u.begun {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("db: begin: %w", err)
		}
		u.begun = true
	}
	for _, s := range stmts {
		if err := result(br, s); err != nil {
			br.Close() // the server skipped the rest
			return nil, err
		}
	}
	if callerReads {
		return br, nil
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	return nil, nil
}

// result reads s's result from br and hands it on.
func result(br pgx.BatchResults, s *Queued) error {
	switch {
	case s.onRow != nil:
		if err := s.onRow(br.QueryRow()); err != nil {
			return s.failScan(err)
		}
	case s.onRows != nil:
		rows, err := br.Query()
		if err != nil {
			return s.fail(err)
		}
		err = s.onRows(rows)
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return s.failScan(err)
		}
	default:
		tag, err := br.Exec()
		if err != nil {
			return s.fail(err)
		}
		if s.onTag != nil {
			if err := s.onTag(tag); err != nil {
				return err
			}
		}
	}
	return nil
}

// failScan maps a database error met while reading a row as the
// statement's error, and passes the reader's own errors through.
func (q *Queued) failScan(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return q.fail(err)
	}
	return err
}

// sendPipeline sends a pipeline's waiting statements as one implicit
// transaction.
func (u *Unit) sendPipeline(ctx context.Context, async bool) error {
	stmts := absorb(u.queue)
	u.queue = nil
	if len(stmts) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if async {
		// Ends with the batch's implicit transaction.
		b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	}
	for _, s := range stmts {
		b.Queue(s.sql, s.args...)
	}
	br := u.pool.SendBatch(ctx, b)
	if async {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("db: commit: %w", err)
		}
	}
	for _, s := range stmts {
		if err := result(br, s); err != nil {
			br.Close() // the server skipped the rest
			return err
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("db: commit: %w", err)
	}
	return nil
}

// Exec implements Querier for a transaction: it runs sql now, with whatever
// waits, in one round trip.
func (u *Unit) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if u.pipeline {
		return pgconn.CommandTag{}, errors.New("db: Exec in a pipeline: Queue the write, or read through Conn")
	}
	var tag pgconn.CommandTag
	q := &Queued{sql: sql, args: args, onTag: func(t pgconn.CommandTag) error { tag = t; return nil },
		mapErr: func(err error) error { return err }}
	if err := u.runNow(ctx, q); err != nil {
		return pgconn.CommandTag{}, err
	}
	return tag, nil
}

// QueryRow implements Querier for a transaction.
func (u *Unit) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if u.pipeline {
		return u.pool.QueryRow(ctx, sql, args...)
	}
	if u.begun && len(u.queue) == 0 {
		return u.conn.QueryRow(ctx, sql, args...)
	}
	br, err := u.send(ctx, &Queued{sql: sql, args: args})
	if err != nil {
		return errRow{err}
	}
	return &batchRow{row: br.QueryRow(), br: br}
}

// Query implements Querier for a transaction.
func (u *Unit) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if u.pipeline {
		return u.pool.Query(ctx, sql, args...)
	}
	if u.begun && len(u.queue) == 0 {
		return u.conn.Query(ctx, sql, args...)
	}
	br, err := u.send(ctx, &Queued{sql: sql, args: args})
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// runNow sends q with whatever waits.
func (u *Unit) runNow(ctx context.Context, q *Queued) error {
	if u.begun && len(u.queue) == 0 {
		tag, err := u.conn.Exec(ctx, q.sql, q.args...)
		if err != nil {
			return q.fail(err)
		}
		return q.onTag(tag)
	}
	_, err := u.send(ctx, q)
	return err
}

// batchRow is the row of a read sent in a batch behind waiting statements;
// scanning it ends the batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r *batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRows are the rows of a read sent behind waiting statements; closing
// them ends the batch.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.br.Close()
	}
}
