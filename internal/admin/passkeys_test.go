package admin_test

import (
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// TestAPI_Passkeys: an administrator lists a user's passkeys and removes
// one, which ends every session of the user (apps told) and is audited;
// reset 2FA removes the rest.
func TestAPI_Passkeys(t *testing.T) {
	h := servertest.New(t, servertest.Localhost)
	root, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: "root@example.com", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	alice := h.CreateUser("alice@example.com", password)
	console := h.NewRP("console", func(c *clients.Client) { c.Scopes = append(c.Scopes, admin.Scope) })
	recv := h.NewReceiver("app")
	app := h.NewRP("app", func(c *clients.Client) { c.BackchannelLogoutURI = recv.URL })
	// The admin API takes a two-factor administrator's token.
	auth := bearer(signInWithCode(t, servertest.NewBrowser(t), withScopes(console, admin.Scope), root.Email, h.EnrollTOTP(root)).AccessToken)

	// alice adds two passkeys, then signs in to the app with one.
	br := servertest.NewBrowser(t)
	signIn(t, br, app, alice.Email)
	phone, laptop := h.Authenticator(), h.Authenticator()
	br.AddPasskey(h, phone, password, "Phone")
	br.AddPasskey(h, laptop, password, "Laptop")
	other := servertest.NewBrowser(t)
	a := app.AuthURL()
	app.Exchange(t, app.Code(t, other.SignInWithPasskey(a.URL, phone), a), a)

	var acc admin.Account
	call(t, h, "GET", "/admin/api/users/"+alice.ID, auth).want(t, 200, &acc)
	if acc.Passkeys == nil || *acc.Passkeys != 2 || acc.MFAEnabled == nil || !*acc.MFAEnabled {
		t.Errorf("account %+v: want 2 passkeys and 2FA on", acc)
	}
	var list struct {
		Passkeys []passkey.Passkey `json:"passkeys"`
	}
	call(t, h, "GET", "/admin/api/users/"+alice.ID+"/passkeys", auth).want(t, 200, &list)
	if len(list.Passkeys) != 2 || list.Passkeys[0].Name != "Phone" || list.Passkeys[0].LastUsedAt == nil || list.Passkeys[1].LastUsedAt != nil {
		t.Fatalf("passkeys %+v: want Phone (used) and Laptop (never used)", list.Passkeys)
	}

	t.Run("refusals", func(t *testing.T) {
		call(t, h, "GET", "/admin/api/users/"+alice.ID+"/passkeys", "").wantError(t, 401, "unauthorized")
		call(t, h, "GET", "/admin/api/users/00000000-0000-0000-0000-000000000000/passkeys", auth).wantError(t, 404, "not_found")
		call(t, h, "DELETE", "/admin/api/users/"+alice.ID+"/passkeys/not-a-uuid", auth).wantError(t, 404, "not_found")
		call(t, h, "DELETE", "/admin/api/users/"+root.ID+"/passkeys/"+list.Passkeys[0].ID, auth).wantError(t, 404, "not_found")
		if liveSessions(t, h, alice.ID) != 2 {
			t.Error("a refused removal ended sessions")
		}
	})

	var res sessions.Result
	call(t, h, "DELETE", "/admin/api/users/"+alice.ID+"/passkeys/"+list.Passkeys[0].ID, auth).want(t, 200, &res)
	if res.Sessions != 2 || res.Notifications != 2 {
		t.Errorf("removal ended %+v, want both of alice's sessions and a notification each", res)
	}
	recv.WaitFor(t, 2)
	r := call(t, h, "GET", "/admin/api/audit?user="+alice.ID+"&limit=5", auth)
	if !strings.Contains(string(r.body), `"action":"users.remove_passkey"`) || !strings.Contains(string(r.body), list.Passkeys[0].ID) ||
		strings.Contains(string(r.body), "Phone") {
		t.Errorf("audit log lacks the removal by id (or names the passkey): %s", r.body)
	}

	// Reset 2FA (the console's and the CLI's) takes the last passkey too.
	call(t, h, "GET", "/admin/api/users/"+alice.ID+"/passkeys", auth).want(t, 200, &list)
	if len(list.Passkeys) != 1 || list.Passkeys[0].Name != "Laptop" {
		t.Fatalf("after the removal: %+v, want Laptop left", list.Passkeys)
	}
	svc := &admin.Service{Pool: h.Srv.Pool, Users: h.Srv.Users, Sessions: h.Srv.Sessions, MFA: h.Srv.TOTP, Keys: h.Srv.Passkeys}
	if _, err := svc.ResetMFA(h.Ctx, alice.ID, "admin:"+root.ID); err != nil {
		t.Fatalf("reset 2FA of a user with a passkey only: %v", err)
	}
	if on, _ := h.Srv.Passkeys.Registered(h.Ctx, alice.ID); on {
		t.Error("reset 2FA left a passkey")
	}
}

// TestAPI_RequirePasskey: with IDP_ADMIN_REQUIRE_PASSKEY a person's token
// from a password sign-in is refused, naming the acr to ask for (RFC
// 9470); one from a passkey sign-in is accepted.
func TestAPI_RequirePasskey(t *testing.T) {
	h := servertest.New(t, servertest.Localhost, func(c *server.Config) { c.AdminRequirePasskey = true })
	root, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: "root@example.com", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	console := withScopes(h.NewRP("console", func(c *clients.Client) { c.Scopes = append(c.Scopes, admin.Scope) }), admin.Scope)
	br := servertest.NewBrowser(t)
	pwTok := signIn(t, br, console, root.Email)
	r := call(t, h, "GET", "/admin/api/users/"+root.ID, bearer(pwTok.AccessToken))
	r.wantError(t, 401, "insufficient_user_authentication")
	if c := r.header.Get("WWW-Authenticate"); !strings.Contains(c, `acr_values="`+sessions.ACRPhishingResistant+`"`) {
		t.Errorf("WWW-Authenticate %q does not name the acr to ask for", c)
	}

	key := h.Authenticator()
	br.AddPasskey(h, key, password, "")
	a := console.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRPhishingResistant))
	p := br.Get(a.URL)
	p = br.Passkey(p, "/login/totp/passkey/options", "/login/totp/passkey", nil, key.Get)
	tok, _, _ := console.Exchange(t, console.Code(t, p, a), a)
	call(t, h, "GET", "/admin/api/users/"+root.ID, bearer(tok.AccessToken)).want(t, 200, nil)
}
