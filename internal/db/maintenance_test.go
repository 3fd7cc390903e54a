package db_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// MaintenanceOff reports autovacuum as the server has it, and
// track_counts when a connection runs without it (a superuser may turn it
// off for a session, which is how the test gets both answers).
func TestMaintenanceOff(t *testing.T) {
	d := dbtest.New(t)
	autovacuum := dbtest.Value[string](t, d.Pool, `SHOW autovacuum`)
	off, err := db.MaintenanceOff(t.Context(), d.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Contains(off, "autovacuum"); got != (autovacuum == "off") || slices.Contains(off, "track_counts") {
		t.Errorf("MaintenanceOff = %v, with autovacuum %s and track_counts on", off, autovacuum)
	}

	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["track_counts"] = "off"
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if off, err := db.MaintenanceOff(t.Context(), pool); err != nil || !slices.Contains(off, "track_counts") {
		t.Errorf("MaintenanceOff = %v, %v with track_counts off, want it named", off, err)
	}
}
