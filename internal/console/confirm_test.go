package console_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/console"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
)

// clockedEnv is an instance on a clock the test moves. It starts an hour
// in the past (fosite refuses an auth_time in the real future), in the
// middle of a 30-second step.
func clockedEnv(t *testing.T) (*env, *clocktest.Clock) {
	t.Helper()
	clock := clocktest.New(time.Now().Add(-time.Hour).Truncate(30 * time.Second).Add(15 * time.Second))
	return newEnv(t, func(c *server.Config) { c.Now = clock.Now }), clock
}

// send posts form (with the CSRF token of page p) to path, on p's host, as
// b, without following a redirect, and returns the answer and its body.
func send(t *testing.T, e *env, b *servertest.Browser, p servertest.Page, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	form.Set("csrf_token", p.CSRF(t))
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(p.URL.Scheme+"://"+p.URL.Host+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// wrongCode is a well-formed code that no step around now accepts.
func wrongCode(secret string, now time.Time) string {
	valid := map[string]bool{}
	for i := -2; i <= 2; i++ {
		valid[mfa.GenerateCode(secret, now.Add(time.Duration(i)*30*time.Second))] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%06d", n); !valid[c] {
			return c
		}
	}
}

// TestConsole_FreshCode: more than five minutes after the administrator's
// last second factor, the console's destructive actions ask for a current
// code with the action, checked by mfa; it then counts for five minutes.
// Actions that are not destructive never ask.
func TestConsole_FreshCode(t *testing.T) {
	e, clock := clockedEnv(t)
	b, adm, secret := e.adminWithSecret(t, "ada@example.com")
	henry := e.createUser(t, "henry@example.com", false)
	grace := e.createUser(t, "grace@example.com", true)
	e.signIn(t, servertest.NewBrowser(t), e.URL+"/account", grace, "")
	henryPath, gracePath := "/admin/users/"+henry.ID, "/admin/users/"+grace.ID

	if p := b.Get(e.URL + henryPath); strings.Contains(p.Body, `name="code"`) {
		t.Fatal("right after the sign-in the user's page asks for a code")
	}

	clock.Advance(console.FreshFactor + time.Second)
	p := b.Get(e.URL + henryPath)
	servertest.CheckMarkup(t, p.Body)
	for _, id := range []string{"code-delete", "code-password", "code-role"} {
		if !strings.Contains(p.Body, `id="`+id+`"`) {
			t.Errorf("the stale page has no %s field", id)
		}
	}
	if strings.Contains(p.Body, `id="code-revoke"`) || strings.Contains(p.Body, `id="code-disable"`) {
		t.Error("ending a non-administrator's sessions asks for a code")
	}

	t.Run("not destructive: no code", func(t *testing.T) {
		if resp, body := send(t, e, b, p, henryPath+"/revoke-sessions", url.Values{}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("revoking a user's sessions answered %d:\n%s", resp.StatusCode, body)
		}
	})

	unchanged := func(t *testing.T) {
		t.Helper()
		h, err := e.Srv.Users.ByID(e.Ctx, henry.ID)
		if err != nil || h.IsAdmin {
			t.Fatalf("henry after a refused action: %+v (%v)", h, err)
		}
		if same, err := e.Srv.Users.SameAsCurrent(e.Ctx, henry.ID, password); err != nil || !same {
			t.Fatalf("henry's password changed (%v)", err)
		}
		if list, err := e.Srv.Sessions.ListByUser(e.Ctx, grace.ID); err != nil || len(list) != 1 {
			t.Fatalf("grace has %d sessions (%v), want her one", len(list), err)
		}
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		status     int
		want       string
	}{
		{"delete without a code", henryPath + "/delete", url.Values{"confirm_email": {henry.Email}},
			http.StatusForbidden, "needs a current code from your authenticator app"},
		{"delete with a wrong code", henryPath + "/delete", url.Values{"confirm_email": {henry.Email}, "code": {wrongCode(secret, clock.Now())}},
			http.StatusUnauthorized, "That code is not right."},
		{"delete with something that is not a code", henryPath + "/delete", url.Values{"confirm_email": {henry.Email}, "code": {"12"}},
			http.StatusBadRequest, "Enter the 6-digit code"},
		{"set a password", henryPath + "/password", url.Values{"new_password": {"temporary for henry"}},
			http.StatusForbidden, "needs a current code"},
		{"make an administrator", henryPath + "/role", url.Values{"admin": {"true"}}, http.StatusForbidden, "needs a current code"},
		{"revoke an administrator's sessions", gracePath + "/revoke-sessions", url.Values{}, http.StatusForbidden, "needs a current code"},
		{"disable an administrator", gracePath + "/disable", url.Values{}, http.StatusForbidden, "needs a current code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := send(t, e, b, p, tc.path, tc.form)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) || !strings.Contains(body, "Nothing was changed.") {
				t.Fatalf("answered %d, want %d with %q:\n%s", resp.StatusCode, tc.status, tc.want, body)
			}
			if !strings.Contains(body, `name="code"`) {
				t.Fatal("the page that refused the action does not ask for the code")
			}
			unchanged(t)
		})
	}

	code := e.code(adm, secret)
	t.Run("with a current code: done", func(t *testing.T) {
		resp, body := send(t, e, b, p, henryPath+"/delete", url.Values{"confirm_email": {henry.Email}, "code": {code}})
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "notice=deleted") {
			t.Fatalf("delete with a code answered %d to %q:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if _, err := e.Srv.Users.ByID(e.Ctx, henry.ID); !errors.Is(err, users.ErrNotFound) {
			t.Fatalf("henry after the delete: %v", err)
		}
		if n := e.audited(t, audit.Admin(adm.ID), "users.delete", henry.ID); n != 1 {
			t.Errorf("%d audit records of the delete, want 1", n)
		}
	})

	t.Run("the code counts for five minutes", func(t *testing.T) {
		clock.Advance(console.FreshFactor - time.Minute)
		gp := b.Get(e.URL + gracePath)
		if strings.Contains(gp.Body, `name="code"`) {
			t.Fatal("a page within five minutes of the code asks for another")
		}
		if resp, body := send(t, e, b, gp, gracePath+"/revoke-sessions", url.Values{}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("revoking an administrator's sessions after a code answered %d:\n%s", resp.StatusCode, body)
		}
		clock.Advance(2 * time.Minute)
		gp = b.Get(e.URL + gracePath)
		if !strings.Contains(gp.Body, `id="code-role"`) {
			t.Fatal("more than five minutes after the code, the page does not ask for one")
		}
		// The code of six minutes ago does not do.
		resp, body := send(t, e, b, gp, gracePath+"/role", url.Values{"admin": {"false"}, "code": {code}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not right") {
			t.Fatalf("a used code answered %d:\n%s", resp.StatusCode, body)
		}
		if g, err := e.Srv.Users.ByID(e.Ctx, grace.ID); err != nil || !g.IsAdmin {
			t.Fatalf("grace after a refused demotion: %+v (%v)", g, err)
		}
	})
}

// TestConsole_CreateAdministratorNeedsCode: creating a user needs no code,
// creating an administrator does once the last one is old; the form keeps
// what was typed, and asks.
func TestConsole_CreateAdministratorNeedsCode(t *testing.T) {
	e, clock := clockedEnv(t)
	b, adm, secret := e.adminWithSecret(t, "ada@example.com")
	clock.Advance(console.FreshFactor + time.Second)
	home := b.Get(e.URL + "/admin")
	servertest.CheckMarkup(t, home.Body)
	if !strings.Contains(home.Body, `id="code-create"`) {
		t.Fatal("the stale front page's create form has no code field")
	}
	form := func(email string, admin bool) url.Values {
		v := url.Values{"email": {email}, "new_password": {"temporary for them"}}
		if admin {
			v.Set("admin", "on")
		}
		return v
	}
	if resp, _ := send(t, e, b, home, "/admin/users", form("ivy@example.com", false)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("creating a user answered %d, want 303 without a code", resp.StatusCode)
	}
	resp, body := send(t, e, b, home, "/admin/users", form("jo@example.com", true))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs a current code") ||
		!strings.Contains(body, `value="jo@example.com"`) || !strings.Contains(body, `name="admin" checked`) {
		t.Fatalf("creating an administrator without a code answered %d:\n%s", resp.StatusCode, body)
	}
	if _, err := e.Srv.Users.ByEmail(e.Ctx, "jo@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("a refused create stored jo: %v", err)
	}
	withCode := form("jo@example.com", true)
	withCode.Set("code", e.code(adm, secret))
	if resp, body := send(t, e, b, home, "/admin/users", withCode); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("creating an administrator with a code answered %d:\n%s", resp.StatusCode, body)
	}
	if jo, err := e.Srv.Users.ByEmail(e.Ctx, "jo@example.com"); err != nil || !jo.IsAdmin {
		t.Fatalf("jo = %+v (%v), want an administrator", jo, err)
	}
}

// TestConsole_Role: an administrator makes a user an administrator and
// takes the role away again, recorded each time; their own role they
// cannot remove.
func TestConsole_Role(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	kim := e.createUser(t, "kim@example.com", false)
	path := "/admin/users/" + kim.ID
	for _, want := range []bool{true, false} {
		p := b.Get(e.URL + path)
		resp, body := send(t, e, b, p, path+"/role", url.Values{"admin": {fmt.Sprint(want)}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("setting admin=%v answered %d:\n%s", want, resp.StatusCode, body)
		}
		if k, err := e.Srv.Users.ByID(e.Ctx, kim.ID); err != nil || k.IsAdmin != want {
			t.Fatalf("kim after admin=%v: %+v (%v)", want, k, err)
		}
		servertest.WantPage(t, b.Get(e.URL+resp.Header.Get("Location")), path, http.StatusOK,
			map[bool]string{true: "They are an administrator now.", false: "They are no longer an administrator"}[want])
	}
	if n := e.audited(t, audit.Admin(adm.ID), "users.set_admin", kim.ID); n != 2 {
		t.Errorf("%d audit records of the role changes, want 2", n)
	}
	own := b.Get(e.URL + "/admin/users/" + adm.ID)
	if strings.Contains(own.Body, `id="set-role"`) {
		t.Error("the administrator's own page offers to change their role")
	}
	resp, _ := send(t, e, b, own, "/admin/users/"+adm.ID+"/role", url.Values{"admin": {"false"}})
	if a, err := e.Srv.Users.ByID(e.Ctx, adm.ID); resp.StatusCode != http.StatusConflict || err != nil || !a.IsAdmin {
		t.Fatalf("removing one's own role answered %d; the account is %+v (%v)", resp.StatusCode, a, err)
	}
	p := b.Get(e.URL + path)
	if resp, _ := send(t, e, b, p, path+"/role", url.Values{"admin": {"maybe"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("admin=maybe answered %d, want 400", resp.StatusCode)
	}
}

// TestConsole_ServiceAccounts: the apps page lists the registered clients
// and marks a confidential client_credentials client as an admin service
// account, or removes the mark, audited; other clients cannot be marked.
func TestConsole_ServiceAccounts(t *testing.T) {
	e, clock := clockedEnv(t)
	b, adm, secret := e.adminWithSecret(t, "ada@example.com")
	if _, err := e.Srv.Clients.Create(e.Ctx, clients.Client{ID: "offboarding", Name: "Offboarding",
		GrantTypes: []string{clients.GrantClientCredentials}}); err != nil {
		t.Fatal(err)
	}
	e.NewRP("wiki") // authorization code and client_credentials
	if _, err := e.Srv.Clients.Create(e.Ctx, clients.Client{ID: "spa", Public: true,
		RedirectURIs: []string{"https://spa.example.com/cb"}}); err != nil {
		t.Fatal(err)
	}
	p := b.Get(e.URL + "/admin/clients")
	servertest.WantPage(t, p, "/admin/clients", http.StatusOK, "Offboarding")
	servertest.CheckMarkup(t, p.Body)
	for id, form := range map[string]bool{"offboarding": true, "wiki": true, "spa": false} {
		if got := strings.Contains(p.Body, `action="/admin/clients/`+id+`/service-account"`); got != form {
			t.Errorf("%s: a form to mark it: %v, want %v", id, got, form)
		}
	}

	mark := func(t *testing.T, id string, on bool, extra url.Values) (*http.Response, string) {
		t.Helper()
		form := url.Values{"admin_service_account": {fmt.Sprint(on)}}
		for k, v := range extra {
			form[k] = v
		}
		return send(t, e, b, b.Get(e.URL+"/admin/clients"), "/admin/clients/"+id+"/service-account", form)
	}
	isMarked := func(id string) bool {
		on, err := e.Srv.Clients.IsAdminServiceAccount(e.Ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return on
	}

	resp, body := mark(t, "offboarding", true, nil)
	if resp.StatusCode != http.StatusSeeOther || !isMarked("offboarding") {
		t.Fatalf("marking answered %d:\n%s", resp.StatusCode, body)
	}
	servertest.WantPage(t, b.Get(e.URL+resp.Header.Get("Location")), "/admin/clients", http.StatusOK, "is an admin service account now")
	if c, err := e.Srv.Clients.Get(e.Ctx, "offboarding"); err != nil || !c.GetScopes().Has(clients.AdminScope) {
		t.Errorf("the marked client may not ask for admin: %+v (%v)", c, err)
	}
	if n := e.audited(t, audit.Admin(adm.ID), "clients.set_admin", "client:offboarding"); n != 1 {
		t.Errorf("%d audit records of the mark, want 1", n)
	}

	for _, tc := range []struct {
		name, id string
		status   int
	}{
		{"a public client", "spa", http.StatusConflict},
		{"an unknown client", "nobody", http.StatusNotFound},
	} {
		if resp, _ := mark(t, tc.id, true, nil); resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if resp, _ := mark(t, "wiki", true, url.Values{"admin_service_account": {"perhaps"}}); resp.StatusCode != http.StatusBadRequest || isMarked("wiki") {
		t.Errorf("a malformed form answered %d", resp.StatusCode)
	}

	// Stale, removing the mark asks for a code too.
	clock.Advance(console.FreshFactor + time.Second)
	if resp, _ := mark(t, "offboarding", false, nil); resp.StatusCode != http.StatusForbidden || !isMarked("offboarding") {
		t.Fatalf("removing the mark without a code answered %d", resp.StatusCode)
	}
	if resp, _ := mark(t, "offboarding", false, url.Values{"code": {e.code(adm, secret)}}); resp.StatusCode != http.StatusSeeOther || isMarked("offboarding") {
		t.Fatalf("removing the mark with a code answered %d", resp.StatusCode)
	}
}

// TestConsole_ConfirmAgainWithPasskey: an administrator whose second factor
// is a passkey (no authenticator app to give a code from) confirms it's
// them again with the passkey, from the link on the page, and then may act
// for five minutes.
func TestConsole_ConfirmAgainWithPasskey(t *testing.T) {
	clock := clocktest.New(time.Now().Add(-time.Hour).Truncate(30 * time.Second).Add(15 * time.Second))
	e := newEnv(t, servertest.Localhost, func(c *server.Config) { c.Now = clock.Now })
	adm := e.createUser(t, "pia@example.com", true)
	henry := e.createUser(t, "henry@example.com", false)
	auth := e.Authenticator()
	b := servertest.NewBrowser(t)
	e.signIn(t, b, e.Issuer+"/account", adm, "")
	b.AddPasskey(e.Harness, auth, password, "laptop")
	b = servertest.NewBrowser(t)
	p := b.SignInWithPasskey(e.Issuer+"/admin", auth)
	servertest.WantPage(t, p, "/admin", http.StatusOK, "Find a user by email")

	clock.Advance(console.FreshFactor + time.Second)
	henryPath := "/admin/users/" + henry.ID
	p = b.Get(e.Issuer + henryPath)
	if !strings.Contains(p.Body, `id="confirm-again"`) {
		t.Fatalf("the stale page offers no other way to confirm:\n%s", p.Body)
	}
	resp, body := send(t, e, b, p, henryPath+"/delete", url.Values{"confirm_email": {henry.Email}, "code": {"123456"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "you again with your passkey") {
		t.Fatalf("a code from an administrator without an authenticator app: %d\n%s", resp.StatusCode, body)
	}

	// The link steps the session up with the passkey and comes back.
	p = b.Get(e.Issuer + "/admin/confirm?next=" + url.QueryEscape(henryPath))
	if p.URL.Path != "/login/totp" {
		t.Fatalf("confirming again went to %s, want the second-factor page:\n%s", p.URL, p.Body)
	}
	p = b.Passkey(p, "/login/totp/passkey/options", "/login/totp/passkey", nil, auth.Get)
	servertest.WantPage(t, p, henryPath, http.StatusOK, henry.Email)
	if strings.Contains(p.Body, `name="code"`) {
		t.Error("right after confirming again the page still asks for a code")
	}
	if resp, body := send(t, e, b, p, henryPath+"/delete", url.Values{"confirm_email": {henry.Email}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deleting after confirming again answered %d:\n%s", resp.StatusCode, body)
	}
	if _, err := e.Srv.Users.ByID(e.Ctx, henry.ID); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("henry after the delete: %v, want gone", err)
	}
	// Not a way out of the console: next stays under /admin.
	if p := b.Get(e.Issuer + "/admin/confirm?next=https://evil.example/"); p.URL.Host != strings.TrimPrefix(e.Issuer, "http://") || p.URL.Path != "/admin" {
		t.Errorf("next outside the console led to %s", p.URL)
	}
}

// TestConsole_RequirePAR: the apps page shows whether an app must push
// its authorization requests and changes it, audited; the provider
// refuses the app a plain request at once.
func TestConsole_RequirePAR(t *testing.T) {
	e, _ := clockedEnv(t)
	b, adm, _ := e.adminWithSecret(t, "ada@example.com")
	rp := e.NewRP("wiki")
	set := func(t *testing.T, on bool) {
		t.Helper()
		p := b.Get(e.URL + "/admin/clients")
		if !strings.Contains(p.Body, `action="/admin/clients/wiki/require-par"`) {
			t.Fatalf("no form to change PAR for wiki:\n%s", p.Body)
		}
		resp, body := send(t, e, b, p, "/admin/clients/wiki/require-par", url.Values{"require_par": {fmt.Sprint(on)}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("answered %d:\n%s", resp.StatusCode, body)
		}
		p = b.Get(e.URL + resp.Header.Get("Location"))
		servertest.CheckMarkup(t, p.Body)
		if want := fmt.Sprintf(`id="client-wiki" data-service-account="false" data-require-par="%v"`, on); !strings.Contains(p.Body, want) {
			t.Fatalf("the apps page does not show %s:\n%s", want, p.Body)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1"}}})
	if _, err := e.Srv.Clients.Create(e.Ctx, clients.Client{ID: "signer", GrantTypes: []string{clients.GrantClientCredentials},
		TokenEndpointAuthMethod: clients.PrivateKeyJWT, TokenEndpointAuthSigningAlg: "ES256", JWKS: jwks}); err != nil {
		t.Fatal(err)
	}
	servertest.WantPage(t, b.Get(e.URL+"/admin/clients"), "/admin/clients", http.StatusOK, "confidential, private_key_jwt")
	set(t, true)
	if e.audited(t, audit.Admin(adm.ID), admin.ActionSetRequirePAR, audit.Client("wiki")) != 1 {
		t.Error("not audited")
	}
	a := rp.AuthURL()
	if p := servertest.NewBrowser(t).Get(a.URL); p.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("a plain request after requiring PAR: %s, want error=invalid_request", p.URL)
	}
	set(t, false)
	if p := servertest.NewBrowser(t).Get(rp.AuthURL().URL); !p.IsLoginForm() {
		t.Fatalf("a plain request after no longer requiring PAR: %s, want the sign-in form", p.URL)
	}
	resp, _ := send(t, e, b, b.Get(e.URL+"/admin/clients"), "/admin/clients/nope/require-par", url.Values{"require_par": {"true"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown app answered %d, want 404", resp.StatusCode)
	}
}
