package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Job is one row as a kind's Send sees it.
type Job struct {
	ID         int64
	Kind       string
	SID        string
	Subject    string
	ClientID   string
	URI        string
	IncludeSID bool
	Reason     string
	Payload    json.RawMessage
	CreatedAt  time.Time
	Attempts   int // including the one being made
}

const jobColumns = `id, kind, COALESCE(sid::text, ''), subject, client_id, uri, include_sid, reason, payload, created_at, attempts`

// claim takes up to n due rows of the given kinds in one statement. Bumping
// next_attempt_at by the lease hides a claimed row from every other worker
// without holding a transaction open across the delivery; if this worker
// dies, the row becomes due again when the lease runs out. attempts counts
// the claim and fences the outcome: a worker whose lease expired cannot
// overwrite the result of the attempt that replaced it.
func claim(ctx context.Context, pool *pgxpool.Pool, kinds []string, now time.Time, lease time.Duration, n int) ([]Job, error) {
	rows, err := pool.Query(ctx, `
		UPDATE outbox o
		SET next_attempt_at = $3, attempts = o.attempts + 1
		WHERE o.id IN (
			SELECT id FROM outbox
			WHERE kind = ANY($1) AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL
			  AND next_attempt_at <= $2
			ORDER BY next_attempt_at, id
			LIMIT $4
			FOR UPDATE SKIP LOCKED)
		RETURNING `+jobColumns,
		kinds, now, now.Add(lease), n)
	if err != nil {
		return nil, fmt.Errorf("outbox: claim: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Job])
	if err != nil {
		return nil, fmt.Errorf("outbox: claim: %w", err)
	}
	return jobs, nil
}

// Outcome is what one attempt came to.
type Outcome int

const (
	Delivered Outcome = iota // the receiver has it
	Retrying                 // not now (unreachable, busy): try again later
	Failed                   // the receiver refused it: do not retry
	Abandoned                // not delivered within the kind's GiveUpAfter
	// Held: not until something changes (a paused receiver). The row
	// waits, unclaimed, for Release or RetryAll.
	Held
)

func (o Outcome) String() string {
	return [...]string{"delivered", "retry", "failed", "abandoned", "held"}[o]
}

// record stores an attempt's outcome. Delivery is recorded whatever the
// fence says, since the receiver has the message either way; the other
// outcomes only if no later claim has taken the row. A hold also only
// while the row is still under this attempt's lease: a Release since the
// claim made it due (at or before created_at, so before now), and the
// hold decided on what the release undid must not outlive it.
func record(ctx context.Context, pool *pgxpool.Pool, j Job, o Outcome, now, next time.Time, lastErr string) error {
	var err error
	const undecided = ` AND delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`
	switch o {
	case Delivered:
		_, err = pool.Exec(ctx, `
			UPDATE outbox
			SET delivered_at = $2, failed_at = NULL, abandoned_at = NULL, last_error = ''
			WHERE id = $1 AND delivered_at IS NULL`, j.ID, now)
	case Retrying:
		_, err = pool.Exec(ctx, `
			UPDATE outbox SET next_attempt_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2`+undecided, j.ID, j.Attempts, next, lastErr)
	case Failed:
		_, err = pool.Exec(ctx, `
			UPDATE outbox SET failed_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2`+undecided, j.ID, j.Attempts, now, lastErr)
	case Abandoned:
		_, err = pool.Exec(ctx, `
			UPDATE outbox SET abandoned_at = $3, last_error = $4
			WHERE id = $1 AND attempts = $2`+undecided, j.ID, j.Attempts, now, lastErr)
	case Held:
		_, err = pool.Exec(ctx, `
			UPDATE outbox SET next_attempt_at = `+held+`, last_error = $4
			WHERE id = $1 AND attempts = $2 AND next_attempt_at > $3`+undecided, j.ID, j.Attempts, now, lastErr)
	}
	if err != nil {
		return fmt.Errorf("outbox: record %s: %w", o, err)
	}
	return nil
}
