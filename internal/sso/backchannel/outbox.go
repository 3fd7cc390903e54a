package backchannel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// NotifyChannel is the LISTEN/NOTIFY channel that wakes workers. Whoever
// queues outbox rows calls pg_notify on it, with an empty payload, in the
// same transaction, so the notification arrives only once the rows are
// visible. The revocation path in package sessions owns the name.
const NotifyChannel = sessions.NotifyChannel

// ErrNotFound means no undelivered outbox row has the id.
var ErrNotFound = errors.New("backchannel: no undelivered outbox row with that id")

// job is one claimed outbox row.
type job struct {
	ID         int64
	SID        string
	Subject    string
	ClientID   string
	URI        string
	IncludeSID bool
	CreatedAt  time.Time
	Attempts   int // including the one just claimed
	Alg        string
}

// claim takes up to n due rows in one statement. Bumping next_attempt_at by
// the lease hides a claimed row from every other worker without holding a
// transaction open across the HTTP call; if this worker dies, the row
// becomes due again when the lease runs out. attempts counts the claim and
// fences the outcome: a worker whose lease expired cannot overwrite the
// result of the attempt that replaced it.
//
// The alg comes from a scalar subquery rather than a join so that a row
// whose client was deleted is still delivered, with RS256.
func claim(ctx context.Context, pool *pgxpool.Pool, now time.Time, lease time.Duration, n int) ([]job, error) {
	rows, err := pool.Query(ctx, `
		UPDATE logout_outbox o
		SET next_attempt_at = $2, attempts = o.attempts + 1
		WHERE o.id IN (
			SELECT id FROM logout_outbox
			WHERE delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL
			  AND next_attempt_at <= $1
			ORDER BY next_attempt_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING o.id, o.sid::text, o.subject, o.client_id, o.uri, o.include_sid, o.created_at, o.attempts,
			COALESCE((SELECT c.id_token_signed_response_alg FROM oauth_clients c WHERE c.id = o.client_id), 'RS256')`,
		now, now.Add(lease), n)
	if err != nil {
		return nil, fmt.Errorf("backchannel: claim: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[job])
	if err != nil {
		return nil, fmt.Errorf("backchannel: claim: %w", err)
	}
	return jobs, nil
}

// outcome is what one attempt came to.
type outcome int

const (
	delivered outcome = iota // 200 or 204
	retrying                 // unreachable, 5xx or 429: try again later
	failed                   // the relying party refused it: do not retry
	abandoned                // unreachable for longer than GiveUpAfter
)

func (o outcome) String() string {
	return [...]string{"delivered", "retry", "failed", "abandoned"}[o]
}

// record stores an attempt's outcome. Delivery is recorded whatever the
// fence says, since the relying party has the token either way; the other
// outcomes only if no later claim has taken the row.
func record(ctx context.Context, pool *pgxpool.Pool, j job, o outcome, now, next time.Time, lastErr string) error {
	var err error
	switch o {
	case delivered:
		_, err = pool.Exec(ctx, `
			UPDATE logout_outbox
			SET delivered_at = $2, failed_at = NULL, abandoned_at = NULL, last_error = ''
			WHERE id = $1 AND delivered_at IS NULL`, j.ID, now)
	case retrying:
		_, err = pool.Exec(ctx, `
			UPDATE logout_outbox SET next_attempt_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2
			  AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`,
			j.ID, j.Attempts, next, lastErr)
	case failed:
		_, err = pool.Exec(ctx, `
			UPDATE logout_outbox SET failed_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2
			  AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`,
			j.ID, j.Attempts, now, lastErr)
	case abandoned:
		_, err = pool.Exec(ctx, `
			UPDATE logout_outbox SET abandoned_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2
			  AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`,
			j.ID, j.Attempts, now, lastErr)
	}
	if err != nil {
		return fmt.Errorf("backchannel: record %s: %w", o, err)
	}
	return nil
}

// Retry makes an undelivered outbox row due at once, clearing failed_at and
// abandoned_at, and wakes the workers: an administrator's "retry now". The
// row keeps its created_at, so a row already past GiveUpAfter gets one more
// attempt, not a new hour of retries. It joins the transaction in ctx, if
// any; ErrNotFound if the id names no undelivered row.
func Retry(ctx context.Context, pool *pgxpool.Pool, id int64) error {
	err := db.Tx(ctx, pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, pool)
		// Due at created_at rather than now(): in the past for any worker
		// clock that has seen the row queued, and ahead of newer rows.
		tag, err := tx.Exec(ctx, `
			UPDATE logout_outbox
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
		return fmt.Errorf("backchannel: retry %d: %w", id, err)
	}
	return nil
}
