package db

import (
	"context"
	"fmt"
)

// MaintenanceOff names the server settings, among autovacuum and
// track_counts, that are off. Without them nothing analyzes the tables,
// and the statements the pool prepared keep the generic plans made when
// the tables were nearly empty: the session checks then read every live
// session, and sign-in slows as sessions accumulate (docs/performance.md,
// "Soak"). idp serve warns about them at start.
func MaintenanceOff(ctx context.Context, q Querier) ([]string, error) {
	var off []string
	for _, name := range []string{"autovacuum", "track_counts"} {
		var v string
		if err := q.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
			return nil, fmt.Errorf("db: read setting %s: %w", name, err)
		}
		if v == "off" {
			off = append(off, name)
		}
	}
	return off, nil
}
