package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/sessions"
)

// TestVacuumAnalyze_ReplansFrozenSessionCheck is issue 18's decline and the
// soak's remedy on a server with autovacuum off. A connection that prepared
// the session check (sessions.LiveSQL) while sso_sessions held a few
// sessions keeps its generic plan, a full scan of a partial index of the
// live sessions filtered by the id, after thousands more arrive: each check
// then reads every live session. vacuumAnalyze's ANALYZE invalidates that
// plan, and the check finds the session through the primary key again.
func TestVacuumAnalyze_ReplansFrozenSessionCheck(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	sessionsSQL := `INSERT INTO sso_sessions (cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time)
		SELECT sha256(('c' || g || '-' || $1::int)::bytea), (SELECT id FROM users), now() + interval '1 hour', now() + interval '1 day', now()
		FROM generate_series(1, $1::int) g`
	for _, q := range []string{
		// This table only: the test server's autovacuum must not analyze it
		// between the inserts and the first plan.
		`ALTER TABLE sso_sessions SET (autovacuum_enabled = false)`,
		`INSERT INTO users (email) VALUES ('a@example.com')`,
	} {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	if _, err := d.Pool.Exec(ctx, sessionsSQL, 8); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The generic plan, which a prepared statement settles on after its
	// fifth run when it costs no more than the custom ones did.
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE live(uuid, timestamptz) AS `+sessions.LiveSQL("$1", "$2")); err != nil {
		t.Fatal(err)
	}
	var sid string
	if err := conn.QueryRow(ctx, `SELECT id::text FROM sso_sessions LIMIT 1`).Scan(&sid); err != nil {
		t.Fatal(err)
	}
	plan := func() string {
		t.Helper()
		var p string
		if err := conn.QueryRow(ctx, fmt.Sprintf(`EXPLAIN (FORMAT JSON) EXECUTE live('%s', now())`, sid)).Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const byID = `"Index Name": "sso_sessions_pkey"`
	plan() // made on 8 sessions, and cached

	if _, err := d.Pool.Exec(ctx, sessionsSQL, 3000); err != nil {
		t.Fatal(err)
	}
	// On PostgreSQL 15: sso_sessions_expiry_idx read whole, the id a filter.
	if p := plan(); strings.Contains(p, `"Index Cond"`) {
		t.Fatalf("before ANALYZE, the plan made on 8 sessions should still have the id as a mere filter:\n%s", p)
	}
	if err := vacuumAnalyze(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if p := plan(); !strings.Contains(p, byID) || !strings.Contains(p, `"Index Cond": "(id = $1)"`) {
		t.Fatalf("after vacuumAnalyze, the session check on 3 008 sessions should find its row by the primary key:\n%s", p)
	}
}
