package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
)

// result is one in-process run of the CLI.
type result struct {
	stdout, stderr string
	err            error
	code           int    // what main would exit with
	message        string // what main would print to stderr for err
}

// runCLI runs args with IDP_DATABASE_URL set to dbURL (unless empty) and
// stdin as standard input.
func runCLI(t *testing.T, dbURL, stdin string, args ...string) result {
	t.Helper()
	env := map[string]string{"IDP_DATABASE_URL": dbURL}
	var stdout, stderr, report bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, &stderr)
	code := exitCode(err, &report)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, code: code, message: report.String()}
}

// check fails t unless r exited with code and its report or output contains
// want.
func (r result) check(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d (err: %v; stderr: %s)", r.code, code, r.err, r.stderr)
	}
	if code != 0 && !strings.HasPrefix(r.message, "idp: ") {
		t.Fatalf("error report %q does not start with \"idp: \"", r.message)
	}
	if !strings.Contains(r.message+r.stdout, want) {
		t.Fatalf("output does not contain %q\nreport: %s\nstdout: %s", want, r.message, r.stdout)
	}
}

// emptyDatabase creates an unmigrated database for t and returns its URL.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	base := dbtest.URL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := "idp_cli_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func TestRun_Migrate(t *testing.T) {
	dbURL := emptyDatabase(t)
	steps := []struct {
		name string
		args []string
		want string
	}{
		{"first run applies the schema", []string{"migrate"}, "applied 0001_core.sql"},
		{"second run has nothing to do", []string{"migrate"}, "up to date"},
		{"json", []string{"migrate", "--json"}, `"applied": []`},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			runCLI(t, dbURL, "", st.args...).check(t, 0, st.want)
		})
	}
	t.Run("flag overrides the environment", func(t *testing.T) {
		runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "migrate", "--database-url", dbURL).check(t, 0, "up to date")
	})
	t.Run("unreachable database", func(t *testing.T) {
		runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere?connect_timeout=2", "", "migrate").check(t, 1, "db:")
	})
}

func TestRun_Users(t *testing.T) {
	dbURL := dbtest.New(t).URL
	steps := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"create", "correct horse battery\n", []string{"users", "create", "--email", "ada@example.com", "--name", "Ada", "--admin"}, 0, "created administrator ada@example.com"},
		{"duplicate email ignores case", "correct horse battery\n", []string{"users", "create", "--email", "ADA@example.com"}, 1, "email already registered"},
		{"password without newline", "another passphrase", []string{"users", "create", "--email", "bob@example.com", "--json"}, 0, `"email": "bob@example.com"`},
		{"empty stdin", "", []string{"users", "create", "--email", "eve@example.com"}, 2, "no password on stdin"},
		{"empty first line", "\nsecond line\n", []string{"users", "create", "--email", "eve@example.com"}, 2, "no password on stdin"},
		{"weak password", "short\n", []string{"users", "create", "--email", "eve@example.com"}, 1, "at least 8 characters"},
		{"common password", "Password1\n", []string{"users", "create", "--email", "eve@example.com"}, 1, "one of the most common passwords"},
		{"invalid email", "correct horse battery\n", []string{"users", "create", "--email", "Eve <eve@example.com>"}, 1, "invalid email"},
		{"missing email", "correct horse battery\n", []string{"users", "create"}, 2, "missing required flag --email"},
		{"list", "", []string{"users", "list"}, 0, "ada@example.com"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			runCLI(t, dbURL, st.stdin, st.args...).check(t, st.code, st.want)
		})
	}
	t.Run("list json", func(t *testing.T) {
		r := runCLI(t, dbURL, "", "users", "list", "--json")
		r.check(t, 0, "[")
		var list []struct {
			Email   string `json:"email"`
			IsAdmin bool   `json:"is_admin"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("output is not a JSON list: %v\n%s", err, r.stdout)
		}
		if len(list) != 2 || list[0].Email != "ada@example.com" || !list[0].IsAdmin || list[1].IsAdmin {
			t.Fatalf("list = %+v, want ada (admin) then bob", list)
		}
	})
}

func TestRun_Clients(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := clients.NewStore(d.Pool)
	store.TTL = -1 // read what the CLI wrote, uncached

	t.Run("create prints a secret that verifies", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "create", "--id", "web", "--name", "Web",
			"--redirect-uri", "https://app.example.com/cb", "--redirect-uri", "http://localhost:3000/cb",
			"--post-logout-redirect-uri", "https://app.example.com/",
			"--backchannel-logout-uri", "https://app.example.com/bcl", "--scope", "openid", "--scope", "admin")
		r.check(t, 0, "shown only this once")
		m := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no secret in output:\n%s", r.stdout)
		}
		c, err := store.Get(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if err := (clients.SecretHasher{}).Compare(ctx, c.SecretHash, []byte(m[1])); err != nil {
			t.Fatalf("printed secret does not verify: %v", err)
		}
		if len(c.RedirectURIs) != 2 || len(c.Scopes) != 2 || !c.BackchannelLogoutSessionRequired || c.IDTokenAlg != "RS256" {
			t.Fatalf("stored client %+v does not match the flags", c)
		}
	})

	t.Run("create json", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "create", "--json", "--id", "svc", "--grant-type", "client_credentials",
			"--id-token-alg", "ES256", "--backchannel-logout-session-required=false")
		r.check(t, 0, "client_secret")
		var out struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		c, err := store.Get(ctx, "svc")
		if err != nil {
			t.Fatal(err)
		}
		if out.ClientID != "svc" || (clients.SecretHasher{}).Compare(ctx, c.SecretHash, []byte(out.ClientSecret)) != nil {
			t.Fatalf("JSON %+v does not match the stored client", out)
		}
		if c.BackchannelLogoutSessionRequired || c.IDTokenAlg != "ES256" {
			t.Fatalf("stored client %+v does not match the flags", c)
		}
	})

	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"public client has no secret", []string{"clients", "create", "--id", "spa", "--public", "--redirect-uri", "https://spa.example.com/cb"}, 0, "there is no secret"},
		{"duplicate id", []string{"clients", "create", "--id", "web", "--redirect-uri", "https://x.example.com/cb"}, 1, "already registered"},
		{"http redirect", []string{"clients", "create", "--id", "bad", "--redirect-uri", "http://app.example.com/cb"}, 1, "must use https"},
		{"no redirect", []string{"clients", "create", "--id", "bad"}, 1, "at least one redirect URI"},
		{"implicit grant", []string{"clients", "create", "--id", "bad", "--redirect-uri", "https://a.example.com/cb", "--grant-type", "implicit"}, 1, "implicit"},
		{"bad algorithm", []string{"clients", "create", "--id", "bad", "--redirect-uri", "https://a.example.com/cb", "--id-token-alg", "HS256"}, 1, "HS256"},
		{"loopback back-channel URI", []string{"clients", "create", "--id", "bad", "--redirect-uri", "https://a.example.com/cb",
			"--backchannel-logout-uri", "http://127.0.0.1:9001/bc"}, 1, "IDP_ALLOW_PRIVATE_BACKCHANNEL"},
		{"loopback back-channel URI allowed", []string{"clients", "create", "--id", "local", "--redirect-uri", "https://a.example.com/cb",
			"--backchannel-logout-uri", "http://127.0.0.1:9001/bc", "--allow-private-backchannel"}, 0, "client_secret"},
		{"delete it", []string{"clients", "delete", "--id", "local"}, 0, "deleted client local"},
		{"missing id", []string{"clients", "create", "--redirect-uri", "https://a.example.com/cb"}, 2, "missing required flag --id"},
		{"list", []string{"clients", "list"}, 0, "spa"},
		{"delete unknown", []string{"clients", "delete", "--id", "nope"}, 1, `client not found: "nope"`},
		{"delete", []string{"clients", "delete", "--id", "spa"}, 0, "deleted client spa"},
		{"deleted is gone", []string{"clients", "delete", "--id", "spa"}, 1, "client not found"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			runCLI(t, d.URL, "", st.args...).check(t, st.code, st.want)
		})
	}
	t.Run("nothing invalid was written", func(t *testing.T) {
		if _, err := store.Get(ctx, "bad"); err == nil {
			t.Fatal("client \"bad\" exists")
		}
	})
	t.Run("list json", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "list", "--json")
		r.check(t, 0, "client_id")
		var list []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("output is not a JSON list: %v\n%s", err, r.stdout)
		}
		if len(list) != 2 || list[0]["client_id"] != "svc" || list[1]["client_id"] != "web" {
			t.Fatalf("list = %v, want svc and web", list)
		}
		// No field holds secret material (token_endpoint_auth_method's
		// value client_secret_basic only names how the client authenticates).
		for _, c := range list {
			for k := range c {
				if strings.Contains(k, "secret") || strings.Contains(k, "hash") {
					t.Fatalf("list shows secret material (%s):\n%s", k, r.stdout)
				}
			}
		}
	})
}

func TestRun_Usage(t *testing.T) {
	const dbURL = "postgres://nobody@127.0.0.1:1/unused" // never reached
	tests := []struct {
		name  string
		dbURL string
		args  []string
		code  int
		want  string
	}{
		{"no command", dbURL, nil, 2, "missing command"},
		{"unknown command", dbURL, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", dbURL, []string{"users", "frobnicate"}, 2, `unknown command "users frobnicate"`},
		{"group without subcommand", dbURL, []string{"clients"}, 2, "missing command after 'clients'"},
		{"flag before the command", dbURL, []string{"--json", "migrate"}, 2, "flags follow it"},
		{"unknown flag", dbURL, []string{"clients", "list", "--frob"}, 2, "flag provided but not defined: -frob"},
		{"flag without value", dbURL, []string{"users", "create", "--email"}, 2, "flag needs an argument"},
		{"stray argument", dbURL, []string{"clients", "delete", "--id", "x", "extra"}, 2, `unexpected argument "extra"`},
		{"missing required flag", dbURL, []string{"clients", "delete"}, 2, "missing required flag --id"},
		{"missing database url", "", []string{"clients", "list"}, 2, "set IDP_DATABASE_URL or pass --database-url"},
		{"help", dbURL, []string{"help"}, 0, "commands:"},
		{"group help", dbURL, []string{"clients", "--help"}, 0, "delete"},
		{"command help", dbURL, []string{"clients", "create", "-h"}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runCLI(t, tc.dbURL, "", tc.args...).check(t, tc.code, tc.want)
		})
	}
	t.Run("command help lists its flags without the database password", func(t *testing.T) {
		r := runCLI(t, "postgres://u:hunter2@db/x", "", "clients", "create", "-h")
		if !strings.Contains(r.stderr, "-redirect-uri") || strings.Contains(r.stderr, "hunter2") {
			t.Fatalf("help:\n%s", r.stderr)
		}
	})
}

func TestRun_ServeMemoryLimit(t *testing.T) {
	// Refused before anything is opened: the database URL is unreachable.
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--memory-limit", "lots").
		check(t, 2, "--memory-limit: memory limit must be auto, off or a size like 512MiB")
}

func TestRun_ServeTrustedProxies(t *testing.T) {
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--trusted-proxies", "10.0.0.0/8,proxy.example").
		check(t, 2, `--trusted-proxies: trusted proxies: "proxy.example" is neither`)
}

// TestRun_ServeSettings: boolean and duration settings are real flags, and
// every mistake is reported at once, under the name the operator used:
// the flag when given, the variable when it came from the environment.
func TestRun_ServeSettings(t *testing.T) {
	nowhere := "postgres://nobody@127.0.0.1:1/nowhere"
	t.Run("all at once, named as given", func(t *testing.T) {
		r := runEnv(t, map[string]string{"IDP_DATABASE_URL": nowhere, "IDP_REQUIRE_MFA": "yes",
			"IDP_SESSION_IDLE_TIMEOUT": "forever", "IDP_MEMORY_LIMIT": "lots"},
			"serve", "--log-format", "xml", "--issuer", "http://login.example.com")
		for _, want := range []string{
			`IDP_REQUIRE_MFA: must be true or false, not "yes"`,
			`IDP_SESSION_IDLE_TIMEOUT: must be a positive duration like 8h or 30m, not "forever"`,
			`IDP_MEMORY_LIMIT: memory limit must be auto`,
			`--log-format: must be text or json, not "xml"`,
			`--issuer: must use https`,
			`--secret / IDP_SECRET: is required`,
		} {
			if !strings.Contains(r.message, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.message)
			}
		}
		if r.code != 2 {
			t.Errorf("exit %d, want 2", r.code)
		}
	})
	t.Run("a flag wins over a bad variable", func(t *testing.T) {
		r := runEnv(t, map[string]string{"IDP_DATABASE_URL": nowhere, "IDP_REQUIRE_MFA": "yes"},
			"serve", "--require-mfa", "--issuer", "http://localhost:8080", "--memory-limit", "lots")
		if strings.Contains(r.message, "IDP_REQUIRE_MFA") || !strings.Contains(r.message, "--memory-limit:") {
			t.Errorf("stderr:\n%s", r.message)
		}
	})
	t.Run("bare boolean flags", func(t *testing.T) {
		for _, args := range [][]string{{"--require-mfa"}, {"--migrate=false"}, {"--require-mfa=true", "--session-idle-timeout", "30m"}} {
			r := runEnv(t, map[string]string{"IDP_DATABASE_URL": nowhere},
				append([]string{"serve", "--issuer", "http://localhost:8080", "--memory-limit", "lots"}, args...)...)
			if strings.Contains(r.message, "flag") || !strings.Contains(r.message, "--memory-limit:") {
				t.Errorf("%v: stderr:\n%s", args, r.message)
			}
		}
	})
}
