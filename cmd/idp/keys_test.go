package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
)

const keysTestSecret = "keys-test-server-secret-0123456789-abcdefgh"

// runEnv runs args with exactly the environment env.
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr, report bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &report)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, code: code, message: report.String()}
}

func TestRun_Keys(t *testing.T) {
	d := dbtest.New(t)
	env := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": keysTestSecret}
	noSecret := map[string]string{"IDP_DATABASE_URL": d.URL}
	wrongSecret := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": strings.Repeat("x", 40)}

	t.Run("rotate needs the server secret", func(t *testing.T) {
		runEnv(t, noSecret, "keys", "rotate").check(t, 2, "IDP_SECRET is required")
	})
	t.Run("unknown algorithm", func(t *testing.T) {
		runEnv(t, env, "keys", "rotate", "--alg", "HS256").check(t, 2, "--alg must be RS256 or ES256")
	})
	t.Run("negative publish-ahead", func(t *testing.T) {
		runEnv(t, env, "keys", "rotate", "--publish-ahead", "-1m").check(t, 2, "must not be negative")
	})

	var rotated keyInfo
	t.Run("rotate", func(t *testing.T) {
		before := time.Now()
		r := runEnv(t, env, "keys", "rotate", "--alg", "ES256", "--json")
		r.check(t, 0, `"alg": "ES256"`)
		if err := json.Unmarshal([]byte(r.stdout), &rotated); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if rotated.State != "next" || rotated.Kid == "" {
			t.Errorf("rotated key = %+v, want a kid in state next", rotated)
		}
		if ahead := rotated.ActiveAt.Sub(rotated.CreatedAt); ahead != 10*time.Minute {
			t.Errorf("active_at − created_at = %s, want the default 10m", ahead)
		}
		if rotated.CreatedAt.Before(before.Add(-time.Second)) {
			t.Errorf("created_at %s is before the command ran", rotated.CreatedAt)
		}
		if r.stderr != "" {
			t.Errorf("unexpected stderr: %s", r.stderr)
		}
	})
	t.Run("the running instances can open it", func(t *testing.T) {
		box, err := secrets.New(keysTestSecret, "signing-keys")
		if err != nil {
			t.Fatal(err)
		}
		set, err := keys.Load(context.Background(), d.Pool, box, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := set.PublicKey(rotated.Kid); !ok {
			t.Error("the rotated key is not published")
		}
		if kid, _, _ := set.Signer(keys.ES256); kid == rotated.Kid {
			t.Error("the rotated key signs before its publish-ahead ran out")
		}
	})
	t.Run("list", func(t *testing.T) {
		r := runEnv(t, noSecret, "keys", "list")
		r.check(t, 0, rotated.Kid)
		for _, want := range []string{"KID", "ACTIVE FROM", "next", "signing"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("list lacks %q:\n%s", want, r.stdout)
			}
		}
	})
	t.Run("list json", func(t *testing.T) {
		r := runEnv(t, noSecret, "keys", "list", "--json")
		r.check(t, 0, "[")
		var list []keyInfo
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("output is not a JSON list: %v\n%s", err, r.stdout)
		}
		states := map[string]string{}
		for _, k := range list {
			states[k.Alg+" "+k.State] = k.Kid
		}
		// The first rotate on an empty table also created the initial keys.
		if len(list) != 3 || states["ES256 next"] != rotated.Kid || states["ES256 signing"] == "" || states["RS256 signing"] == "" {
			t.Errorf("keys = %+v, want RS256 and ES256 signing plus the rotated ES256 next", list)
		}
	})
	t.Run("short publish-ahead warns", func(t *testing.T) {
		r := runEnv(t, env, "keys", "rotate", "--publish-ahead", "30s")
		r.check(t, 0, "signing from")
		if !strings.Contains(r.stderr, "warning: --publish-ahead 30s is shorter than 1m30s") {
			t.Errorf("no warning on stderr: %q", r.stderr)
		}
	})
	t.Run("wrong secret stores nothing", func(t *testing.T) {
		before := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM signing_keys`)
		runEnv(t, wrongSecret, "keys", "rotate").check(t, 1, "was the server secret changed?")
		after := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM signing_keys`)
		if after != before {
			t.Errorf("%d keys after a rotate with the wrong secret, want %d", after, before)
		}
	})
	t.Run("help lists the commands", func(t *testing.T) {
		r := runEnv(t, noSecret, "keys", "help")
		r.check(t, 0, "rotate")
		if !strings.Contains(r.stdout, "list") {
			t.Errorf("help lacks list:\n%s", r.stdout)
		}
	})
}
