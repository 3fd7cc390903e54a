package main

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/registration"
)

// TestRun_ClientsRegistrationToken: `idp clients registration-token`
// prints an initial access token once, keeps only its SHA-256 with its
// expiry and uses, and audits it; bad flags are usage errors.
func TestRun_ClientsRegistrationToken(t *testing.T) {
	d := dbtest.New(t)

	t.Run("json", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "registration-token", "--ttl", "2h", "--uses", "3", "--json")
		r.check(t, 0, "initial_access_token")
		var tok registration.InitialToken
		if err := json.Unmarshal([]byte(r.stdout), &tok); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(tok.Token))
		left := dbtest.Value[int32](t, d.Pool, `SELECT uses_left FROM registration_tokens WHERE token_hash = $1`, sum[:])
		expires := dbtest.Value[time.Time](t, d.Pool, `SELECT expires_at FROM registration_tokens WHERE token_hash = $1`, sum[:])
		if left != 3 || expires.Sub(time.Now()) < 119*time.Minute || expires.Sub(time.Now()) > 2*time.Hour {
			t.Errorf("stored uses %d, expiry %s", left, expires)
		}
		if n := dbtest.Value[int64](t, d.Pool, `SELECT count(*) FROM audit_log WHERE actor = 'cli' AND action = $1 AND target = $2`,
			registration.ActionIssueToken, "registration_token:"+tok.ID); n != 1 {
			t.Errorf("%d audit entries, want 1", n)
		}
		if strings.Contains(dbtest.Value[string](t, d.Pool, `SELECT string_agg(details::text, ' ') FROM audit_log`), tok.Token) {
			t.Error("the token is in the audit log")
		}
	})
	t.Run("text, any number of uses", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "registration-token")
		r.check(t, 0, "any number of clients")
		if n := dbtest.Value[int64](t, d.Pool, `SELECT count(*) FROM registration_tokens WHERE uses_left IS NULL`); n != 1 {
			t.Errorf("%d tokens without a use limit, want 1", n)
		}
	})
	t.Run("bad ttl", func(t *testing.T) {
		runCLI(t, d.URL, "", "clients", "registration-token", "--ttl", "-1h").check(t, 2, "--ttl must be a positive duration")
	})
	t.Run("bad uses", func(t *testing.T) {
		runCLI(t, d.URL, "", "clients", "registration-token", "--uses", "-2").check(t, 2, "--uses must be 0")
	})
}

func TestRun_ServeOpenRegistration(t *testing.T) {
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--open-registration", "everyone").
		check(t, 2, `--open-registration: must be "native"`)
}
