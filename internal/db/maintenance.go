package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MaintenanceOff names the server settings, among autovacuum and
// track_counts, that are off. Without them nothing analyzes the tables,
// and the statements the pool prepared keep the generic plans made when
// the tables were nearly empty: the session checks then read every live
// session, and sign-in slows as sessions accumulate (docs/performance.md,
// "Soak"). idp serve warns about them at start.
func MaintenanceOff(ctx context.Context, q Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT name FROM pg_settings
		WHERE name IN ('autovacuum', 'track_counts') AND setting = 'off' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("db: read the maintenance settings: %w", err)
	}
	off, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("db: read the maintenance settings: %w", err)
	}
	return off, nil
}
