// Package outbox owns the durable outbox: the table of everything the
// provider delivers after a commit (back-channel logout notifications, and
// whatever else registers a kind). A row is queued in the same unit of work
// as the change that causes it, so it exists exactly when the change does;
// workers on every instance claim due rows (FOR UPDATE SKIP LOCKED), hand
// each to its kind's Send, and record the outcome, retrying with backoff.
// Nothing is lost across a restart and no two workers attempt a row at once;
// delivery is at least once.
//
// A kind that nobody pushes (a receiver polls for it) is never claimed by a
// worker: its rows wait for Pending and Ack.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// NotifyChannel is the LISTEN/NOTIFY channel that wakes workers. A trigger
// on the table (migration 0013) notifies it for every statement that
// queues rows, at commit, so nobody who queues has to.
const NotifyChannel = "idp_outbox"

// ErrNotFound means no undelivered row has the id.
var ErrNotFound = errors.New("outbox: no undelivered row with that id")

// Message is one row to queue. Kind is required; the other columns are
// what a logout notification needs and what the console lists (whose
// session, which app), and may stay empty for other kinds, which carry the
// rest in Payload (marshalled as JSON).
type Message struct {
	Kind     string
	SID      string // an SSO session id (uuid), or empty
	Subject  string
	ClientID string
	URI      string
	Reason   string
	Payload  any
}

// Queue adds msgs, due at once, created at now. Inside a unit (a
// transaction or a pipeline in ctx) the insert waits in it and commits with
// it, so the rows exist exactly when the change that caused them does, and
// its error surfaces where the unit's do; outside one it runs at once.
func Queue(ctx context.Context, pool *pgxpool.Pool, now time.Time, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	n := len(msgs)
	kinds, subjects, clients, uris, reasons, payloads := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	sids := make([]*string, n)
	for i, m := range msgs {
		if m.Kind == "" {
			return errors.New("outbox: queue: a message without a kind")
		}
		p := []byte("{}")
		if m.Payload != nil {
			var err error
			if p, err = json.Marshal(m.Payload); err != nil {
				return fmt.Errorf("outbox: queue %s: %w", m.Kind, err)
			}
		}
		kinds[i], subjects[i], clients[i], uris[i], reasons[i], payloads[i] = m.Kind, m.Subject, m.ClientID, m.URI, m.Reason, string(p)
		if m.SID != "" {
			sids[i] = &m.SID
		}
	}
	const insert = `
		INSERT INTO outbox (kind, sid, subject, client_id, uri, reason, payload, created_at, next_attempt_at)
		SELECT k, s, sub, c, u, r, p::jsonb, $8, $8
		FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS m(k, s, sub, c, u, r, p)`
	args := []any{kinds, sids, subjects, clients, uris, reasons, payloads, now}
	if u, ok := db.From(ctx); ok {
		u.Queue(insert, args...).MapErr(func(err error) error { return fmt.Errorf("outbox: queue: %w", err) })
		return nil
	}
	if _, err := pool.Exec(ctx, insert, args...); err != nil {
		return fmt.Errorf("outbox: queue: %w", err)
	}
	return nil
}

// Retry makes an undelivered row due at once, clearing failed_at and
// abandoned_at, and wakes the workers: an administrator's "retry now". The
// row keeps its created_at, so a row already past its kind's GiveUpAfter
// gets one more attempt, not a new hour of retries. It joins the
// transaction in ctx, if any; ErrNotFound if the id names no undelivered
// row.
func Retry(ctx context.Context, pool *pgxpool.Pool, id int64) error {
	err := db.Tx(ctx, pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, pool)
		// Due at created_at rather than now(): in the past for any worker
		// clock that has seen the row queued, and ahead of newer rows.
		tag, err := tx.Exec(ctx, `
			UPDATE outbox
			SET failed_at = NULL, abandoned_at = NULL, next_attempt_at = LEAST(now(), created_at)
			WHERE id = $1 AND delivered_at IS NULL`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: retry %d: %w", id, err)
	}
	return nil
}

// Pending returns up to limit undelivered rows of a polled kind that f
// selects (a client's, of some reasons), oldest first, and whether more
// wait beyond them. Rows past expiresAfter (measured from created_at) are
// left out: a receiver that stopped polling does not get a week of stale
// events at once.
func Pending(ctx context.Context, pool *pgxpool.Pool, f Filter, limit int, now time.Time, expiresAfter time.Duration) (jobs []Job, more bool, err error) {
	cond, args, err := f.where()
	if err != nil {
		return nil, false, err
	}
	rows, err := db.Conn(ctx, pool).Query(ctx, `
		SELECT `+jobColumns+` FROM outbox
		WHERE `+undecided+` AND created_at > $6 AND `+cond+`
		ORDER BY id
		LIMIT $7`, append(args, now.Add(-expiresAfter), limit+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("outbox: pending %v: %w", f.Kinds, err)
	}
	jobs, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Job])
	if err != nil {
		return nil, false, fmt.Errorf("outbox: pending %v: %w", f.Kinds, err)
	}
	if len(jobs) > limit {
		return jobs[:limit], true, nil
	}
	return jobs, false, nil
}

// Ack records the delivery of rows of a polled kind that the client has
// acknowledged; ids of other clients or kinds, or already acknowledged,
// are ignored. It returns how many rows it marked.
func Ack(ctx context.Context, pool *pgxpool.Pool, kind, clientID string, ids []int64, now time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := db.Conn(ctx, pool).Exec(ctx, `
		UPDATE outbox SET delivered_at = $4, last_error = ''
		WHERE id = ANY($3) AND kind = $1 AND client_id = $2 AND delivered_at IS NULL`,
		kind, clientID, ids, now)
	if err != nil {
		return 0, fmt.Errorf("outbox: ack %s: %w", kind, err)
	}
	return int(tag.RowsAffected()), nil
}

// Fail records that a client reported a polled row as undeliverable
// (RFC 8936's setErrs): it is kept, failed, with the client's words.
func Fail(ctx context.Context, pool *pgxpool.Pool, kind, clientID string, id int64, now time.Time, lastErr string) error {
	_, err := db.Conn(ctx, pool).Exec(ctx, `
		UPDATE outbox SET failed_at = $4, last_error = $5
		WHERE id = $3 AND kind = $1 AND client_id = $2 AND delivered_at IS NULL AND failed_at IS NULL`,
		kind, clientID, id, now, lastErr)
	if err != nil {
		return fmt.Errorf("outbox: fail %s: %w", kind, err)
	}
	return nil
}

// Sweeps are the janitor's for the outbox: delivered rows are kept a week
// (the console shows them); failed and abandoned ones until an
// administrator deals with them.
var Sweeps = []db.Sweep{
	{Table: "outbox", Key: "id", Due: "delivered_at < $1", Keep: 7 * 24 * time.Hour, Rare: true},
}
