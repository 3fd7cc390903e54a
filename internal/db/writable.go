package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrReadOnly is a database that answers but refuses writes: a standby, or
// a former primary after a failover, which is where a pool's connections
// are left when a replicated PostgreSQL promotes another node.
var ErrReadOnly = errors.New("db: the server is read-only (a standby, or a demoted primary)")

// CheckWritable asks a connection of pool whether it can write: nil, an
// error when the database does not answer, or ErrReadOnly. On ErrReadOnly
// it also resets the pool, closing every connection (those in use as they
// come back), so the next ones are opened anew: to the new primary, by
// name or by target_session_attrs=read-write in the URL. Without the reset
// the pool would keep its read-only connections until they age out.
func CheckWritable(ctx context.Context, pool *pgxpool.Pool) error {
	var readOnly string
	err := pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&readOnly)
	if errors.Is(err, pgconn.ErrReadOnlyConnection) {
		// A new connection was refused as read-only (ParseConfig): the
		// pool holds no read-only connection to let go of.
		return ErrReadOnly
	}
	if err != nil {
		return fmt.Errorf("db: check writable: %w", err)
	}
	if readOnly == "on" {
		pool.Reset()
		return ErrReadOnly
	}
	return nil
}
