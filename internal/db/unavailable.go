package db

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database could not serve
// the request, rather than that the request was wrong: it could not be
// reached or did not answer in time, it is shutting down or starting, it
// refuses more connections, or it is read-only (a standby, a demoted
// primary). The layers that answer requests map it to 503 and "try again
// in a moment" (temporarily_unavailable to apps): the database's trouble,
// said only to the requests it failed.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrReadOnly) ||
		errors.Is(err, pgconn.ErrReadOnlyConnection) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting
			return true
		case pgErr.Code == "53300": // too many connections
			return true
		case pgErr.Code == readOnlyTransaction:
			return true
		}
	}
	// pgx reports a connection that broke mid-statement with its own
	// wording; it is safe to retry because nothing reached the server.
	return pgconn.SafeToRetry(err)
}

// readOnlyTransaction is SQLSTATE 25006: a write on a read-only server.
const readOnlyTransaction = "25006"

// readOnlyWatch drops a connection that has turned read-only (its server
// was demoted in a failover) when it goes back to the pool, instead of
// handing it out again: every request it would serve would fail. New
// connections are refused unless the server takes writes (ParseConfig's
// target_session_attrs), so the pool refills on the new primary.
type readOnlyWatch struct {
	seen sync.Map // *pgx.Conn that saw a read-only error
}

func (w *readOnlyWatch) note(conn *pgx.Conn, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == readOnlyTransaction {
		w.seen.Store(conn, true)
	}
}

// keep is pgxpool's AfterRelease: false destroys the connection.
func (w *readOnlyWatch) keep(conn *pgx.Conn) bool {
	_, readOnly := w.seen.LoadAndDelete(conn)
	return !readOnly
}

func (w *readOnlyWatch) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (w *readOnlyWatch) TraceQueryEnd(_ context.Context, conn *pgx.Conn, d pgx.TraceQueryEndData) {
	w.note(conn, d.Err)
}
func (w *readOnlyWatch) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (w *readOnlyWatch) TraceBatchQuery(_ context.Context, conn *pgx.Conn, d pgx.TraceBatchQueryData) {
	w.note(conn, d.Err)
}
func (w *readOnlyWatch) TraceBatchEnd(_ context.Context, conn *pgx.Conn, d pgx.TraceBatchEndData) {
	w.note(conn, d.Err)
}
