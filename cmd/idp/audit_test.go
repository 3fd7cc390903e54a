package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/dbtest"
)

// TestRun_Audit: what the CLI does to accounts is in the audit log, and
// `idp audit` prints it newest first, for everyone or for one user, as a
// table or JSON, a page at a time.
func TestRun_Audit(t *testing.T) {
	d := dbtest.New(t)
	for _, email := range []string{"ann@example.com", "ben@example.com"} {
		runCLI(t, d.URL, testPassword+"\n", "users", "create", "--email", email).check(t, 0, email)
	}
	runCLI(t, d.URL, "", "users", "disable", "--email", "ann@example.com").check(t, 0, "disabled")
	runCLI(t, d.URL, "", "users", "enable", "--email", "ann@example.com").check(t, 0, "enabled")
	runCLI(t, d.URL, "", "users", "require-mfa", "--email", "ben@example.com").check(t, 0, "ben@example.com")
	runCLI(t, d.URL, "", "clients", "create", "--id", "wiki", "--redirect-uri", "https://wiki.example/cb").check(t, 0, "client_secret")
	runCLI(t, d.URL, "", "clients", "delete", "--id", "wiki").check(t, 0, "deleted client wiki")
	runEnv(t, map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": keysTestSecret}, "keys", "rotate").check(t, 0, "published now")
	runCLI(t, d.URL, testPassword+"\n", "users", "create", "--email", "cy@example.com").check(t, 0, "cy@example.com")
	runCLI(t, d.URL, "", "users", "delete", "--email", "cy@example.com").check(t, 0, "deleted cy@example.com")
	runCLI(t, d.URL, "", "users", "delete", "--email", "cy@example.com").check(t, 1, "no user with email cy@example.com")
	// What is refused records nothing.
	runCLI(t, d.URL, testPassword+"\n", "users", "create", "--email", "ANN@example.com").check(t, 1, "already registered")
	runCLI(t, d.URL, "", "clients", "delete", "--id", "wiki").check(t, 1, "wiki")

	entries := func(args ...string) []audit.Entry {
		t.Helper()
		r := runCLI(t, d.URL, "", append([]string{"audit", "--json"}, args...)...)
		r.check(t, 0, "")
		var out []audit.Entry
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("audit --json: %v\n%s", err, r.stdout)
		}
		return out
	}
	actions := func(es []audit.Entry) string {
		var a []string
		for _, e := range es {
			if e.Actor != "cli" {
				t.Errorf("entry %+v: actor %q, want cli", e, e.Actor)
			}
			a = append(a, e.Action)
		}
		return strings.Join(a, " ")
	}

	// disable ends the sessions it finds (none) and says so in the log too,
	// before its own entry, in the same transaction.
	all := entries()
	if got, want := actions(all), "users.delete sessions.revoke users.create keys.rotate clients.delete clients.create users.require_mfa users.enable users.disable sessions.revoke users.create users.create"; got != want {
		t.Errorf("audit: %s, want %s", got, want)
	}
	if got, want := actions(entries("--user", "ANN@example.com")), "users.enable users.disable sessions.revoke users.create"; got != want {
		t.Errorf("audit --user ann: %s, want %s", got, want)
	}
	// Targets say what was acted on; details never hold the client secret.
	for _, e := range all {
		switch e.Action {
		case "clients.create", "clients.delete":
			if e.Target != "client:wiki" {
				t.Errorf("%s target %q, want client:wiki", e.Action, e.Target)
			}
		case "keys.rotate":
			if !strings.HasPrefix(e.Target, "key:") || !strings.Contains(string(e.Details), `"alg": "RS256"`) {
				t.Errorf("keys.rotate entry %+v", e)
			}
		case "users.create":
			if !strings.Contains(string(e.Details), `"admin": false`) || strings.Contains(string(e.Details), "@") {
				t.Errorf("users.create details %s, want the role and no email", e.Details)
			}
		}
		if strings.Contains(string(e.Details), "secret") {
			t.Errorf("entry %+v mentions a secret", e)
		}
	}
	page := entries("--limit", "2", "--before", "0")
	next := entries("--limit", "2", "--before", strconv.FormatInt(page[1].ID, 10))
	if len(page) != 2 || len(next) != 2 || page[0].ID != all[0].ID || next[0].ID != all[2].ID || next[1].ID != all[3].ID {
		t.Errorf("pages %v then %v, want the log %v two at a time", page, next, all)
	}

	r := runCLI(t, d.URL, "", "audit", "--user", "ben@example.com")
	r.check(t, 0, "users.require_mfa")
	if !strings.HasPrefix(r.stdout, "ID") || strings.Contains(r.stdout, "users.disable") || !strings.Contains(r.stdout, `{"require": true}`) {
		t.Errorf("audit --user ben table:\n%s", r.stdout)
	}

	runCLI(t, d.URL, "", "audit", "--user", "nobody@example.com").check(t, 1, "no user with email nobody@example.com")
	runCLI(t, d.URL, "", "audit", "--limit", "0").check(t, 2, "--limit must be from 1 to 500")
	runCLI(t, d.URL, "", "audit", "--limit", "501").check(t, 2, "--limit must be from 1 to 500")
	runCLI(t, d.URL, "", "audit", "--before", "-1").check(t, 2, "--before must be an entry ID")
}
