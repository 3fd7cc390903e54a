// Package db owns the PostgreSQL connection pool, schema migrations and the
// one way the provider writes: a Unit of work (a transaction or a
// pipeline) that travels in the context, see Unit.
package db

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/migrations"
)

// Querier runs a statement now: the pool, or a transaction (Conn).
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Defaults for what the URL does not set (connect_timeout,
// pool_ping_timeout): an unreachable database makes a connection attempt
// fail within seconds instead of pgxpool's two minutes, and a connection
// that no longer answers is dropped when it is next handed out.
const (
	DefaultConnectTimeout = 3 * time.Second
	DefaultPingTimeout    = 2 * time.Second
)

// DefaultMaxConns is an instance's pool size unless the URL sets
// pool_max_conns. pgxpool's own default, max(4, cores), made the pool the
// bottleneck at 16 concurrent clients on two cores: requests wait on the
// database's round trips, not on the cores, and a sign-in holds no
// connection while it hashes. Several instances on one database need
// instances × pool_max_conns below PostgreSQL's max_connections (100 by
// default), with room for the janitor's, the listener's and the operators'
// connections: set pool_max_conns in IDP_DATABASE_URL when many instances
// share one database, or put a pooler in front of it.
const DefaultMaxConns = 20

// ParseConfig reads a pool configuration from url with the defaults above
// for what it does not set, and, unless it sets target_session_attrs,
// libpq's target_session_attrs=read-write: a new connection that lands on a
// read-only server (a standby, a demoted primary) is refused, and the next
// host of a multi-host URL is tried. The provider writes on nearly every
// request, so a read-only connection is no use to it, and one that turns
// read-only is dropped when it comes back to the pool (readOnlyWatch).
func ParseConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("db: parse url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ConnConfig.ValidateConnect == nil {
		cfg.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	}
	w := &readOnlyWatch{}
	cfg.ConnConfig.Tracer = w
	cfg.AfterRelease = w.keep
	return cfg, nil
}

// Open connects a pool (ParseConfig) and checks the database answers.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: ping: %w", err)
	}
	return pool, nil
}

// IsSerializationFailure reports SQLSTATE 40001 or 40P01: the transaction
// lost a race and may be retried.
func IsSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// IsAssertFailure reports whether err was raised by idp_assert
// (migrations/0006): a statement written as
//
//	SELECT idp_assert(<condition>, 'what failed')
//
// raises SQLSTATE P0001 when its condition is false, which rolls back the
// unit it is in.
func IsAssertFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "P0001"
}

// IsUniqueViolation reports SQLSTATE 23505.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// migrationLock is an arbitrary advisory lock key; it serialises migrations
// when several instances start at once.
const migrationLock = 7262011

// Migrate applies every embedded migration not yet recorded, each in its own
// transaction. Safe to run concurrently and repeatedly.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (applied []string, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("db: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("db: migrate lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock) //nolint:errcheck
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("db: migrate: %w", err)
	}
	pending, err := Pending(ctx, conn)
	if err != nil {
		return nil, err
	}
	for _, name := range pending {
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return applied, err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("db: migration %s: %w", name, err)
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// Pending lists embedded migrations the database has not recorded.
func Pending(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) ([]string, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	done := map[string]bool{}
	rows, err := q.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return names, nil
		}
		return nil, fmt.Errorf("db: read migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("db: read migrations: %w", err)
	}
	for _, v := range versions {
		done[v] = true
	}
	var pending []string
	for _, n := range names {
		if !done[n] && strings.HasSuffix(n, ".sql") {
			pending = append(pending, n)
		}
	}
	return pending, nil
}
