package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// passkeyEnv is newEnv on a localhost issuer, which passkeys need; the
// tests' requests go to it too, so the browser's cookies are the
// issuer's.
func passkeyEnv(t *testing.T, mutate ...func(*server.Config)) *env {
	t.Helper()
	h := servertest.New(t, append([]func(*server.Config){servertest.Localhost}, mutate...)...)
	h.URL = h.Issuer
	return &env{Harness: h, steps: map[string]int64{}}
}

// TestConsole_RemovePasskey: the user's page lists their passkeys; removing
// one ends every session of the user, tells their apps and is audited.
func TestConsole_RemovePasskey(t *testing.T) {
	e := passkeyEnv(t)
	admin, adm := e.adminBrowser(t, "root@example.com")
	alice := e.createUser(t, "alice@example.com", false)
	app := e.newApp(t, "app")
	laptop := servertest.NewBrowser(t)
	laptopSID := e.signInTo(t, laptop, app, alice)
	key := e.Authenticator()
	laptop.AddPasskey(e.Harness, key, password, "Laptop")
	phone := servertest.NewBrowser(t)
	req := app.rp.AuthURL()
	_, _, claims := app.rp.Exchange(t, app.rp.Code(t, phone.SignInWithPasskey(req.URL, key), req), req)
	phoneSID := claims["sid"].(string)

	p := admin.Get(e.URL + "/admin/users/" + alice.ID)
	servertest.WantPage(t, p, "/admin/users/"+alice.ID, http.StatusOK, "Laptop")
	servertest.CheckMarkup(t, p.Body)
	if !strings.Contains(p.Body, `<dd id="user-mfa">on`) || !strings.Contains(p.Body, "with a passkey") {
		t.Errorf("the user's page does not show 2FA on and the passkey session:\n%s", p.Body)
	}
	list, err := e.Srv.Passkeys.List(e.Ctx, alice.ID)
	if err != nil || len(list) != 1 {
		t.Fatalf("passkeys %+v, %v", list, err)
	}
	resp := post(t, admin, p, "/admin/users/"+alice.ID+"/passkeys/"+list[0].ID+"/remove")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove: %d, want 303", resp.StatusCode)
	}
	p = admin.Get(e.URL + resp.Header.Get("Location"))
	servertest.WantPage(t, p, "/admin/users/"+alice.ID, http.StatusOK, "Passkey removed: ended 2 sessions")
	for _, sid := range []string{laptopSID, phoneSID} {
		if why := e.revokedReason(t, sid); why != sessions.ReasonFactorsChanged {
			t.Errorf("session %s ended for %q, want %q", sid, why, sessions.ReasonFactorsChanged)
		}
	}
	if n := e.audited(t, audit.Admin(adm.ID), "users.remove_passkey", alice.ID); n != 1 {
		t.Errorf("%d audit records of the removal, want 1", n)
	}
	if on, _ := e.Srv.Passkeys.Registered(e.Ctx, alice.ID); on {
		t.Error("the passkey is still there")
	}
}

// TestConsole_RequirePasskey: with IDP_ADMIN_REQUIRE_PASSKEY an
// administrator signed in with password and code is told to add a
// passkey; with one, the console asks for it (no code form) and opens.
func TestConsole_RequirePasskey(t *testing.T) {
	e := passkeyEnv(t, func(c *server.Config) { c.AdminRequirePasskey = true })
	adm := e.createUser(t, "root@example.com", true)
	secret := e.enroll(t, adm)
	b := servertest.NewBrowser(t)
	p := e.signIn(t, b, e.URL+"/admin", adm, secret)
	servertest.WantPage(t, p, "/admin", http.StatusForbidden, "asks administrators to sign in with a passkey")

	key := e.Authenticator()
	b.AddPasskey(e.Harness, key, password, "")
	p = b.Get(e.URL + "/admin")
	servertest.WantPage(t, p, "/login/totp", http.StatusOK, "Use your passkey")
	if strings.Contains(p.Body, `action="/login/totp"`) {
		t.Error("the console's passkey step-up offers a code form")
	}
	p = b.Passkey(p, "/login/totp/passkey/options", "/login/totp/passkey", nil, key.Get)
	servertest.WantPage(t, p, "/admin", http.StatusOK, "Find a user by email")
}
