package main

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
)

// TestRun_ServiceAccounts: `idp clients create --admin` registers an admin
// service account (client_credentials and the admin scope by default), and
// `idp clients set-admin` marks a client or removes the mark; each change
// is audited as the command line, and a client that cannot be one is
// refused with nothing written.
func TestRun_ServiceAccounts(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := clients.NewStore(d.Pool)
	store.TTL = -1 // read what the CLI wrote, uncached
	marked := func(t *testing.T, id string) bool {
		t.Helper()
		on, err := store.IsAdminServiceAccount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return on
	}
	audited := func(t *testing.T, action, target string) []string {
		t.Helper()
		rows, err := d.Pool.Query(ctx, `SELECT details::text FROM audit_log WHERE actor = 'cli' AND action = $1 AND target = $2 ORDER BY id`,
			action, target)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}

	t.Run("create --admin", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "create", "--json", "--id", "offboarding", "--admin")
		r.check(t, 0, "client_secret")
		c, err := store.Get(ctx, "offboarding")
		if err != nil {
			t.Fatal(err)
		}
		if !c.AdminServiceAccount || !slices.Equal(c.GrantTypes, []string{"client_credentials"}) || !slices.Equal(c.Scopes, []string{"admin"}) {
			t.Fatalf("stored %+v, want a service account with client_credentials and the admin scope", c)
		}
		details := audited(t, "clients.create", "client:offboarding")
		var d struct {
			ServiceAccount bool `json:"admin_service_account"`
		}
		if len(details) != 1 || json.Unmarshal([]byte(details[0]), &d) != nil || !d.ServiceAccount {
			t.Fatalf("audit details %v, want one entry saying admin_service_account", details)
		}
	})

	for _, st := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"create --admin --public", []string{"clients", "create", "--id", "bad", "--admin", "--public"}, 1, "must be a confidential client"},
		{"create --admin without client_credentials", []string{"clients", "create", "--id", "bad", "--admin",
			"--grant-type", "authorization_code", "--redirect-uri", "https://a.example.com/cb"}, 1, "needs the client_credentials grant"},
		{"an ordinary client", []string{"clients", "create", "--id", "reports", "--grant-type", "client_credentials"}, 0, "client_secret"},
		{"a web app", []string{"clients", "create", "--id", "web", "--redirect-uri", "https://web.example.com/cb"}, 0, "client_secret"},
		{"set-admin on a client without client_credentials", []string{"clients", "set-admin", "--id", "web"}, 1, "needs the client_credentials grant"},
		{"set-admin on an unknown client", []string{"clients", "set-admin", "--id", "nope"}, 1, `client not found: "nope"`},
		{"set-admin without --id", []string{"clients", "set-admin"}, 2, "missing required flag --id"},
		{"set-admin", []string{"clients", "set-admin", "--id", "reports"}, 0, "client reports is an admin service account"},
		{"list shows it", []string{"clients", "list"}, 0, "admin-service-account"},
	} {
		t.Run(st.name, func(t *testing.T) {
			runCLI(t, d.URL, "", st.args...).check(t, st.code, st.want)
		})
	}
	if _, err := store.Get(ctx, "bad"); err == nil {
		t.Fatal(`client "bad" exists after refused creates`)
	}
	if marked(t, "web") {
		t.Fatal("a refused set-admin marked web")
	}
	if c, err := store.Get(ctx, "reports"); err != nil || !c.AdminServiceAccount || !c.GetScopes().Has("admin") {
		t.Fatalf("reports after set-admin: %+v (%v), want marked, with the admin scope", c, err)
	}

	t.Run("set-admin --admin=false", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "clients", "set-admin", "--id", "reports", "--admin=false", "--json")
		r.check(t, 0, `"admin_service_account": false`)
		if marked(t, "reports") {
			t.Fatal("reports is still marked")
		}
		if got := audited(t, "clients.set_admin", "client:reports"); !slices.Equal(got,
			[]string{`{"admin_service_account": true}`, `{"admin_service_account": false}`}) {
			t.Fatalf("audit details %v, want the mark and its removal", got)
		}
	})
}

// TestRun_DeviceClient: a device (RFC 8628) registers as a public client
// with the device and refresh grants and no redirect URI; a client may
// require DPoP (--dpop-bound-access-tokens); refresh_token alone, without
// a code or device grant, is still refused.
func TestRun_DeviceClient(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := clients.NewStore(d.Pool)
	store.TTL = -1
	r := runCLI(t, d.URL, "", "clients", "create", "--json", "--id", "tv", "--public",
		"--grant-type", "urn:ietf:params:oauth:grant-type:device_code", "--grant-type", "refresh_token")
	r.check(t, 0, `"client_id"`)
	c, err := store.Get(ctx, "tv")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Public || len(c.RedirectURIs) != 0 ||
		!slices.Equal(c.GrantTypes, []string{clients.GrantDeviceCode, clients.GrantRefreshToken}) {
		t.Fatalf("stored %+v, want a public device client without redirect URIs", c)
	}
	r = runCLI(t, d.URL, "", "clients", "create", "--id", "dpop-svc", "--grant-type", "client_credentials", "--dpop-bound-access-tokens")
	r.check(t, 0, "")
	if c, err := store.Get(ctx, "dpop-svc"); err != nil || !c.DPoPBoundAccessTokens {
		t.Fatalf("--dpop-bound-access-tokens: stored %+v (%v)", c, err)
	}
	r = runCLI(t, d.URL, "", "clients", "create", "--id", "lonely", "--public", "--grant-type", "refresh_token")
	r.check(t, 1, "needs authorization_code or urn:ietf:params:oauth:grant-type:device_code")
	if _, err := store.Get(ctx, "lonely"); err == nil {
		t.Fatal("a client with refresh_token alone was written")
	}
}

// TestRun_AccessTokenFormat: --access-token-format jwt is stored; opaque is
// the default; an unknown format is refused and nothing is written.
func TestRun_AccessTokenFormat(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := clients.NewStore(d.Pool)
	store.TTL = -1
	runCLI(t, d.URL, "", "clients", "create", "--id", "jwt-svc", "--grant-type", "client_credentials",
		"--access-token-format", "jwt", "--audience", "https://api.example.com/").check(t, 0, "")
	if c, err := store.Get(ctx, "jwt-svc"); err != nil || c.AccessTokenFormat != clients.AccessTokenJWT {
		t.Fatalf("--access-token-format jwt: stored %+v (%v)", c, err)
	}
	runCLI(t, d.URL, "", "clients", "create", "--id", "plain-svc", "--grant-type", "client_credentials").check(t, 0, "")
	if c, err := store.Get(ctx, "plain-svc"); err != nil || c.AccessTokenFormat != clients.AccessTokenOpaque {
		t.Fatalf("default format: stored %+v (%v)", c, err)
	}
	runCLI(t, d.URL, "", "clients", "create", "--id", "odd", "--grant-type", "client_credentials",
		"--access-token-format", "paseto").check(t, 1, `access token format "paseto" is not supported`)
	if _, err := store.Get(ctx, "odd"); err == nil {
		t.Fatal("a client with an unknown access token format was written")
	}
}
