package servertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/idp/idp/internal/users"
)

// Stored is what the database holds, table by table: a row count and a
// digest of the rows' contents, so that an update shows as well as an
// insert or a delete. Fuzz targets take one before and after a request
// and, when it was refused, require them equal.
type Stored map[string]string

// touched are columns that move by design without anything being
// stored: a session's sliding idle expiry, which a read slides, and a
// sign-in's count of wrong codes, which a refused code raises. They are
// left out of the digests.
var touched = []string{"last_seen_at", "idle_expires_at", "mfa_failures"}

// Stored reads every table of the schema (but the migrations' own) in one
// round trip. It takes the test or fuzz input's t, since a fuzz target
// calls it from inside f.Fuzz.
func (h *Harness) Stored(t testing.TB) Stored {
	t.Helper()
	if h.storedSQL == "" {
		rows, err := h.DB.Pool.Query(h.Ctx, `SELECT table_name FROM information_schema.tables
			WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				t.Fatal(err)
			}
			row := "to_jsonb(t)"
			for _, c := range touched {
				row += " - '" + c + "'"
			}
			parts = append(parts, fmt.Sprintf(`SELECT '%s', count(*) || ' rows ' || md5(coalesce(string_agg((%s)::text, ',' ORDER BY (%[2]s)::text), '')) FROM %[1]s t`, name, row))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		h.storedSQL = strings.Join(parts, " UNION ALL ")
	}
	rows, err := h.DB.Pool.Query(h.Ctx, h.storedSQL)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	s := Stored{}
	for rows.Next() {
		var table, digest string
		if err := rows.Scan(&table, &digest); err != nil {
			t.Fatal(err)
		}
		s[table] = digest
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Changed names the tables whose contents differ between s and after,
// but for those in except (which a refusal updates by design: the
// throttle counting a wrong password).
func (s Stored) Changed(after Stored, except ...string) []string {
	var out []string
	for table, d := range after {
		if d != s[table] && !slices.Contains(except, table) {
			out = append(out, table)
		}
	}
	slices.Sort(out)
	return out
}

// CheapPasswords makes the password hashes of tb's accounts cheap (the
// least argon2id allows) until tb ends. For fuzz targets: under go test
// -fuzz every package is built with coverage counters, and one hash at
// the real cost takes seconds. A check reads the parameters from the
// stored hash, so what is tested is unchanged; only its cost is. Call it
// before any account is made.
func CheapPasswords(tb testing.TB) {
	saved := users.DefaultParams
	users.DefaultParams = users.Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	tb.Cleanup(func() { users.DefaultParams = saved })
}
