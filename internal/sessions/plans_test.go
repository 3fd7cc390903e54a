package sessions

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// statementLog records every statement a pool sends, alone or batched,
// with its arguments.
type statementLog struct {
	mu   sync.Mutex
	sent []loggedStatement
}

type loggedStatement struct {
	sql  string
	args []any
}

func (l *statementLog) add(sql string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, loggedStatement{sql, args})
}

func (l *statementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL, d.Args)
	return ctx
}
func (l *statementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (l *statementLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (l *statementLog) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.add(d.SQL, d.Args)
}
func (l *statementLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// seqScans lists the tables of big that an EXPLAIN (FORMAT JSON) plan reads
// with a sequential scan.
func seqScans(plan any, big map[string]bool) []string {
	var out []string
	switch v := plan.(type) {
	case map[string]any:
		if v["Node Type"] == "Seq Scan" {
			if rel, _ := v["Relation Name"].(string); big[rel] {
				out = append(out, rel)
			}
		}
		for _, c := range v {
			out = append(out, seqScans(c, big)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, seqScans(c, big)...)
		}
	}
	return out
}

// TestRevoke_Plans: every statement the revocation paths send (Revoke by
// sid and by user with offline grants, DropSecondFactor, ExpireDue) can
// find its rows of the tables that grow with use through an index: planned
// with sequential scans disabled, which the planner still uses where no
// index serves the condition, both for the statement's arguments and as
// the generic plan a prepared statement falls back to. (Whether the planner
// prefers an index depends on the tables' sizes: on small tables a scan is
// cheaper and right.) A sequential scan there costs every revocation the
// whole table, held under the session's locks: the code table had no index
// on sid (migration 0018), 0.2 s per revocation at 100 000 codes.
func TestRevoke_Plans(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	seed := []string{
		`INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 200) g`,
		`INSERT INTO oauth_clients (id, name, secret_hash) VALUES ('app', 'app', '\x00')`,
		`INSERT INTO sso_sessions (cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time, revoked_at)
			SELECT sha256(('c' || g)::bytea), (SELECT id FROM users ORDER BY email OFFSET g % 200 LIMIT 1),
				now() + interval '1 hour', now() + interval '1 day', now(), CASE WHEN g % 2 = 0 THEN now() END
			FROM generate_series(1, 5000) g`,
		`INSERT INTO client_sessions (sid, client_id) SELECT id, 'app' FROM sso_sessions`,
	}
	for _, table := range []string{"oauth_authorize_codes", "oauth_access_tokens", "oauth_refresh_tokens"} {
		seed = append(seed, `INSERT INTO `+table+` (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
			SELECT sha256(('`+table+`' || g)::bytea), gen_random_uuid()::text, 'app', s.user_id::text, s.id, now(), now() + interval '1 hour', '{}'
			FROM generate_series(1, 20000) g JOIN (SELECT id, user_id, row_number() OVER () AS n FROM sso_sessions) s ON s.n = 1 + g % 5000`)
	}
	seed = append(seed, `ANALYZE`)
	for _, q := range seed {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("seed: %v\n%s", err, q)
		}
	}
	var userID, sid, other string
	err := d.Pool.QueryRow(ctx, `SELECT s.user_id::text, s.id::text, (SELECT id::text FROM sso_sessions o
			WHERE o.user_id = s.user_id AND o.id <> s.id AND o.revoked_at IS NULL LIMIT 1)
		FROM sso_sessions s WHERE s.revoked_at IS NULL ORDER BY s.id LIMIT 1`).Scan(&userID, &sid, &other)
	if err != nil {
		t.Fatal(err)
	}

	log := &statementLog{}
	cfg, err := db.ParseConfig(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = log
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now()
	m := &Manager{Pool: pool, Now: func() time.Time { return now }, IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, CSRFKey: []byte("k")}
	if err := m.DropSecondFactor(ctx, userID, other); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, Revocation{SIDs: []string{sid}, Reason: ReasonUserSignOut, Actor: "user:" + userID}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, Revocation{UserID: userID, IncludeOffline: true, Reason: ReasonAdminRevoke, Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour) // every session idle: ExpireDue ends them, 100 at a time
	if _, err := m.ExpireDue(ctx, 100); err != nil {
		t.Fatal(err)
	}

	big := map[string]bool{"sso_sessions": true, "client_sessions": true, "oauth_authorize_codes": true,
		"oauth_access_tokens": true, "oauth_refresh_tokens": true, "audit_log": true, "outbox": true}
	explained := 0
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		conn, err := d.Pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `SET enable_seqscan = off; SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for _, s := range log.sent {
			verb := strings.ToUpper(strings.Fields(s.sql)[0])
			if verb != "SELECT" && verb != "UPDATE" && verb != "DELETE" && verb != "WITH" {
				continue
			}
			if strings.Contains(s.sql, "set_config(") {
				continue
			}
			var plan []byte
			// EXPLAIN without ANALYZE plans the statement and runs nothing.
			if err := conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+s.sql, s.args...).Scan(&plan); err != nil {
				t.Fatalf("explain: %v\n%s", err, s.sql)
			}
			var tree any
			if err := json.Unmarshal(plan, &tree); err != nil {
				t.Fatal(err)
			}
			explained++
			if scans := seqScans(tree, big); len(scans) > 0 {
				t.Errorf("%s plan: sequential scan of %v:\n%s\nplan: %s", mode, scans, strings.Join(strings.Fields(s.sql), " "), plan)
			}
		}
		conn.Release()
	}
	if explained < 2*8 {
		t.Errorf("explained %d statements, want the revocation paths' (at least 8, twice)", explained)
	}
}
