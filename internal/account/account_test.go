package account_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
)

func TestAccount_RequiresSession(t *testing.T) {
	e := newEnv(t)
	e.CreateUser("alice@example.com", password)
	bob := e.CreateUser("bob@example.com", password)
	bobSecret, _ := e.enroll(t, bob)

	t.Run("no session: sign in, then land on /account", func(t *testing.T) {
		b := servertest.NewBrowser(t)
		p := b.Get(e.URL + "/account")
		if !p.IsLoginForm() {
			t.Fatalf("GET /account without a session: %s (%d), want the login form", p.URL, p.Status)
		}
		p = b.Post(e.URL+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "email": {"alice@example.com"}, "password": {password}})
		servertest.WantPage(t, p, "/account", http.StatusOK, `id="account-email">alice@example.com<`)
		if !strings.Contains(p.Body, "Test alice@example.com") {
			t.Error("the account page does not show the name")
		}
		if p.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", p.Header.Get("Cache-Control"))
		}
	})

	t.Run("a password without the second factor is not a session", func(t *testing.T) {
		b := servertest.NewBrowser(t)
		p := b.SignIn(e.URL+"/account", "bob@example.com", password)
		if p.URL.Path != "/login/totp" {
			t.Fatalf("after bob's password: %s, want the code step", p.URL)
		}
		flowCSRF := p.CSRF(t)
		if p := b.Get(e.URL + "/account"); !p.IsLoginForm() {
			t.Fatalf("half-signed-in GET /account: %s (%d), want the login form:\n%s", p.URL, p.Status, p.Body)
		}
		// A post with the flow's token acts on nothing either.
		if p := b.Post(e.URL+"/account/sign-out-everywhere", url.Values{"csrf_token": {flowCSRF}}); !p.IsLoginForm() {
			t.Fatalf("half-signed-in POST: %s (%d), want the login form", p.URL, p.Status)
		}
		var revocations int
		if err := e.DB.Pool.QueryRow(e.Ctx, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke'`).Scan(&revocations); err != nil {
			t.Fatal(err)
		}
		if revocations != 0 {
			t.Fatalf("%d revocations recorded, want none", revocations)
		}
		// Finishing the sign-in the account page started lands on it.
		e.signIn(t, b, "bob@example.com", bobSecret)
	})

	t.Run("the QR code needs a session", func(t *testing.T) {
		p := servertest.NewBrowser(t).Get(e.URL + "/account/mfa/qr.png")
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("QR without a session: %d, want 401", p.Status)
		}
	})
}

func TestAccount_Markup(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	bob := e.CreateUser("bob@example.com", password)
	bobSecret, _ := e.enroll(t, bob)
	aliceBrowser, bobBrowser := servertest.NewBrowser(t), servertest.NewBrowser(t)
	e.signIn(t, aliceBrowser, alice.Email, "")
	e.signIn(t, bobBrowser, bob.Email, bobSecret)

	pages := []struct {
		name string
		b    *servertest.Browser
		path string
		want string
	}{
		{"account with 2FA off", aliceBrowser, "/account", `href="/account/mfa/enroll"`},
		{"account with 2FA on", bobBrowser, "/account", `action="/account/mfa/disable"`},
		{"enrollment", aliceBrowser, "/account/mfa/enroll", `id="totp-secret"`},
	}
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			p := pg.b.Get(e.URL + pg.path)
			servertest.WantPage(t, p, pg.path, http.StatusOK, pg.want)
			if !strings.Contains(p.Body, `<link rel="stylesheet" href="/static/style.css">`) {
				t.Error("page does not use the shared layout")
			}
			if strings.Contains(p.Body, "<script") {
				t.Error("page uses JavaScript")
			}
			for _, h := range []string{"Cache-Control", "Content-Security-Policy", "X-Frame-Options"} {
				if p.Header.Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
			servertest.CheckMarkup(t, p.Body)
		})
	}
}

// TestAccount_AdminLink: an administrator's account page links to the
// console; anyone else's does not.
func TestAccount_AdminLink(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	grace := e.CreateUser("grace@example.com", password)
	if _, err := e.DB.Pool.Exec(e.Ctx, `UPDATE users SET is_admin = true WHERE id = $1`, grace.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		u    users.User
		want bool
	}{{alice, false}, {grace, true}} {
		p := e.signIn(t, servertest.NewBrowser(t), tc.u.Email, "")
		if got := strings.Contains(p.Body, `<a href="/admin" id="admin-console">`); got != tc.want {
			t.Errorf("%s: link to the console = %v, want %v", tc.u.Email, got, tc.want)
		}
		if !strings.Contains(p.Body, `href="/oauth2/sessions/logout">Sign out`) {
			t.Errorf("%s: no way to sign out from the account page", tc.u.Email)
		}
	}
}
