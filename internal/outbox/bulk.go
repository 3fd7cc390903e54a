package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// A Filter selects rows for the operations that act on many at once: a
// stream's, a client's. Kinds is required; every other field narrows it
// when set.
type Filter struct {
	Kinds    []string
	ClientID string
	// Path names a string member of the payload ({"stream_id"}, or
	// {"set", "jti"}); with Values, only rows whose member is one of them
	// are selected. Backlogs groups by it.
	Path   []string
	Values []string
	// Reasons keeps only rows with one of these reasons.
	Reasons []string
}

// where is f as a condition on the outbox's columns, its arguments
// numbered from $1.
func (f Filter) where() (string, []any, error) {
	if len(f.Kinds) == 0 {
		return "", nil, errors.New("outbox: a filter without kinds")
	}
	if len(f.Values) > 0 && len(f.Path) == 0 {
		return "", nil, errors.New("outbox: a filter with values but no payload path")
	}
	path := f.Path
	if path == nil {
		path = []string{}
	}
	return `kind = ANY($1) AND ($2 = '' OR client_id = $2)
		AND (cardinality($4::text[]) = 0 OR payload #>> $3::text[] = ANY($4))
		AND (cardinality($5::text[]) = 0 OR reason = ANY($5))`,
		[]any{f.Kinds, f.ClientID, path, nonNil(f.Values), nonNil(f.Reasons)}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// undecided rows are neither delivered nor given up on: due, in backoff,
// leased to a worker, or held.
const undecided = `delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL`

// held is the next_attempt_at of a row that waits for Release rather than
// for a time: no worker's clock reaches it, so no claim takes the row.
const held = `'infinity'::timestamptz`

// Backlog is how a selection of rows stands.
type Backlog struct {
	// Pending counts the undecided rows, Held among them those that wait
	// for Release.
	Pending, Held int
	// Failed counts the rows refused or given up on, and not delivered
	// since.
	Failed int
	// LastError is the error of the newest row that has one.
	LastError string
}

// Group names the rows of one client whose payload member at the filter's
// Path has one value.
type Group struct {
	ClientID string
	Value    string
}

// Backlogs counts the rows f selects, grouped by client and by the value
// at f.Path (Value "" without a Path, or for a row without the member).
// Delivered rows count nowhere, but the janitor keeps them a week, so the
// query reads them too: for an operator's listing, not for a hot path.
func Backlogs(ctx context.Context, q db.Querier, f Filter) (map[Group]Backlog, error) {
	cond, args, err := f.where()
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `
		SELECT client_id, CASE WHEN cardinality($3::text[]) = 0 THEN '' ELSE COALESCE(payload #>> $3::text[], '') END,
			count(*) FILTER (WHERE `+undecided+`)::int,
			count(*) FILTER (WHERE `+undecided+` AND next_attempt_at = `+held+`)::int,
			count(*) FILTER (WHERE delivered_at IS NULL AND (failed_at IS NOT NULL OR abandoned_at IS NOT NULL))::int,
			COALESCE((array_agg(last_error ORDER BY id DESC) FILTER (WHERE last_error <> ''))[1], '')
		FROM outbox WHERE `+cond+`
		GROUP BY 1, 2`, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: backlogs: %w", err)
	}
	out := map[Group]Backlog{}
	var g Group
	var b Backlog
	_, err = pgx.ForEachRow(rows, []any{&g.ClientID, &g.Value, &b.Pending, &b.Held, &b.Failed, &b.LastError}, func() error {
		out[g] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: backlogs: %w", err)
	}
	return out, nil
}

// Find maps the value at f.Path of each undelivered row f selects to the
// row's id: how a receiver's acknowledgement by jti finds its rows.
func Find(ctx context.Context, q db.Querier, f Filter) (map[string]int64, error) {
	if len(f.Path) == 0 {
		return nil, errors.New("outbox: find: a filter without a payload path")
	}
	cond, args, err := f.where()
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `
		SELECT payload #>> $3::text[], id FROM outbox
		WHERE delivered_at IS NULL AND payload #>> $3::text[] IS NOT NULL AND `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: find: %w", err)
	}
	out := map[string]int64{}
	var v string
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&v, &id}, func() error { out[v] = id; return nil }); err != nil {
		return nil, fmt.Errorf("outbox: find: %w", err)
	}
	return out, nil
}

// RetryAll makes every undelivered row f selects due at once — held,
// waiting out a backoff, failed or abandoned — and wakes the workers: an
// administrator's "retry now" for a whole stream. As with Retry, rows keep
// their created_at. It returns how many rows it touched; inside a
// transaction in ctx, it joins it.
func RetryAll(ctx context.Context, pool *pgxpool.Pool, f Filter) (int, error) {
	n, err := due(ctx, pool, f, `failed_at = NULL, abandoned_at = NULL,`, `delivered_at IS NULL`)
	if err != nil {
		return 0, fmt.Errorf("outbox: retry: %w", err)
	}
	return n, nil
}

// Release makes the undecided rows f selects due at once — those Hold
// held, and those waiting out a backoff — and wakes the workers. A row
// leased to a worker is made due too: that worker may have decided to
// hold it before the release, and its verdict must not outlive it (see
// Held). It joins the transaction in ctx, if any.
func Release(ctx context.Context, pool *pgxpool.Pool, f Filter) (int, error) {
	n, err := due(ctx, pool, f, ``, undecided)
	if err != nil {
		return 0, fmt.Errorf("outbox: release: %w", err)
	}
	return n, nil
}

func due(ctx context.Context, pool *pgxpool.Pool, f Filter, set, which string) (int, error) {
	cond, args, err := f.where()
	if err != nil {
		return 0, err
	}
	var n int64
	err = db.Tx(ctx, pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, pool)
		// Due at created_at rather than now(), as in Retry.
		tag, err := tx.Exec(ctx, `
			UPDATE outbox SET `+set+` next_attempt_at = LEAST(now(), created_at)
			WHERE `+which+` AND `+cond, args...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	return int(n), err
}

// Hold keeps the undecided rows f selects from every worker until Release
// (or RetryAll) makes them due: a paused receiver's rows wait for it
// without an attempt every MaxBackoff. Their GiveUpAfter still counts from
// created_at, so a row released after it gets one attempt. It joins the
// transaction in ctx, if any, and returns how many rows it held.
func Hold(ctx context.Context, pool *pgxpool.Pool, f Filter) (int, error) {
	cond, args, err := f.where()
	if err != nil {
		return 0, err
	}
	tag, err := db.Conn(ctx, pool).Exec(ctx, `
		UPDATE outbox SET next_attempt_at = `+held+` WHERE `+undecided+` AND `+cond, args...)
	if err != nil {
		return 0, fmt.Errorf("outbox: hold: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// FailAll fails the undecided rows f selects, with why as their error: a
// receiver that is gone, or that said it wants none of them. It joins the
// transaction in ctx, if any, and returns how many rows it failed.
func FailAll(ctx context.Context, pool *pgxpool.Pool, f Filter, now time.Time, why string) (int, error) {
	cond, args, err := f.where()
	if err != nil {
		return 0, err
	}
	tag, err := db.Conn(ctx, pool).Exec(ctx, `
		UPDATE outbox SET failed_at = $6, last_error = $7 WHERE `+undecided+` AND `+cond,
		append(args, now, why)...)
	if err != nil {
		return 0, fmt.Errorf("outbox: fail: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
