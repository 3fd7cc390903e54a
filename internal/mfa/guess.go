package mfa

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// guessTx is the transaction one guess is judged in (see attempt). Its BEGIN
// travels in the first batch and its COMMIT in the last, so judging a guess
// under the credential's row lock costs two round trips, not four. pgx can
// begin a transaction inside a batch (Batch.BeginTx) but commits only in a
// round trip of its own, so this transaction is driven by hand, on a
// connection held for the guess.
//
// When ctx carries the caller's transaction (db.WithTx), the guess runs in
// that one: no BEGIN, no COMMIT, and the row lock lasts until the caller
// commits.
type guessTx struct {
	q    db.Querier
	conn *pgxpool.Conn // set when the transaction is ours
}

// beginGuess makes no round trip: BEGIN goes out with the first batch.
func (m *TOTP) beginGuess(ctx context.Context) (*guessTx, error) {
	if tx, ok := db.TxFrom(ctx); ok {
		return &guessTx{q: tx}, nil
	}
	conn, err := m.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &guessTx{q: conn, conn: conn}, nil
}

// first returns the batch for the first round trip, which begins the
// transaction when it is ours.
func (g *guessTx) first() *pgx.Batch {
	b := &pgx.Batch{}
	if g.conn != nil {
		b.Queue("BEGIN")
	}
	return b
}

// send sends b inside the transaction and runs its callbacks.
func (g *guessTx) send(ctx context.Context, b *pgx.Batch) error {
	return g.q.SendBatch(ctx, b).Close()
}

// commit sends b and, when the transaction is ours, COMMIT in the same round
// trip. If a statement of b fails, PostgreSQL skips the rest of the batch,
// COMMIT included, and end rolls back.
func (g *guessTx) commit(ctx context.Context, b *pgx.Batch) error {
	if g.conn != nil {
		b.Queue("COMMIT")
	}
	if b.Len() == 0 {
		return nil
	}
	return g.send(ctx, b)
}

// end rolls back a transaction that an error left open, and hands the
// connection back to the pool (which would close one still in a
// transaction).
func (g *guessTx) end(ctx context.Context) {
	if g.conn == nil {
		return
	}
	if g.conn.Conn().PgConn().TxStatus() != 'I' {
		_, _ = g.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
	g.conn.Release()
}
