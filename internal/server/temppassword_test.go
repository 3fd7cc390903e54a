package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

const temporaryPassword = "given by the administrator"

// setTemporary gives u a temporary password, as `idp users set-password`
// does.
func setTemporary(t *testing.T, h *servertest.Harness, u users.User) {
	t.Helper()
	if err := h.Srv.Users.SetPassword(h.Ctx, u.ID, temporaryPassword, true); err != nil {
		t.Fatal(err)
	}
}

// liveSessions counts u's live SSO sessions.
func liveSessions(t *testing.T, h *servertest.Harness, u users.User) int {
	t.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM sso_sessions WHERE user_id = $1 AND revoked_at IS NULL`,
		u.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLogin_TemporaryPassword: a password an administrator set gets a
// person through their factors, then to a form for their own password; no
// session exists until it is in, refusals change nothing, and the new
// password ends the person's other sessions.
func TestLogin_TemporaryPassword(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	laptop := servertest.NewBrowser(t)
	old := signInTo(t, laptop, app, nil, alice.Email)
	setTemporary(t, h, alice)
	if liveSessions(t, h, alice) != 1 {
		t.Fatal("setup: want the laptop's session only")
	}

	phone := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := phone.SignIn(a.URL, alice.Email, temporaryPassword)
	servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "Choose your password")
	servertest.CheckMarkup(t, p.Body)
	if again := phone.Get(a.URL); again.URL.Path == "/callback" {
		t.Fatal("the temporary password alone obtained a code")
	}
	p = phone.SignIn(a.URL, alice.Email, temporaryPassword) // the detour began a new sign-in
	csrf := p.CSRF(t)
	const mine = "only alice knows this one"

	cases := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"no CSRF token", url.Values{"new_password": {mine}, "confirm_password": {mine}}, http.StatusForbidden, "could not be verified"},
		{"confirmation differs", url.Values{"csrf_token": {csrf}, "new_password": {mine}, "confirm_password": {mine + "!"}},
			http.StatusBadRequest, "The two passwords differ"},
		{"too short", url.Values{"csrf_token": {csrf}, "new_password": {"short"}, "confirm_password": {"short"}},
			http.StatusBadRequest, "must be at least 8 characters"},
		{"common", url.Values{"csrf_token": {csrf}, "new_password": {"Password1"}, "confirm_password": {"Password1"}},
			http.StatusBadRequest, "one of the most common passwords"},
		{"the temporary one again", url.Values{"csrf_token": {csrf}, "new_password": {temporaryPassword}, "confirm_password": {temporaryPassword}},
			http.StatusBadRequest, "the password you were given"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := phone.Post(h.Issuer+"/login/new-password", tc.form)
			if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
				t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
			}
			if s, err := h.Srv.Sessions.Get(h.Ctx, old.sid); err != nil || s.RevokedAt != nil || liveSessions(t, h, alice) != 1 {
				t.Fatal("a refusal made or ended a session")
			}
			if same, err := h.Srv.Users.SameAsCurrent(h.Ctx, alice.ID, temporaryPassword); err != nil || !same {
				t.Fatalf("a refusal changed the password (%v)", err)
			}
		})
	}

	t.Run("their own password signs them in and ends the other sessions", func(t *testing.T) {
		p := phone.Post(h.Issuer+"/login/new-password", url.Values{"csrf_token": {csrf}, "new_password": {mine}, "confirm_password": {mine}})
		_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
		if claims["sub"] != alice.ID {
			t.Errorf("sub = %v, want %s", claims["sub"], alice.ID)
		}
		if liveSessions(t, h, alice) != 1 {
			t.Errorf("%d live sessions, want the phone's only", liveSessions(t, h, alice))
		}
		if s, err := h.Srv.Sessions.Get(h.Ctx, old.sid); err != nil || s.RevokedReason != sessions.ReasonFactorsChanged {
			t.Errorf("laptop session: %+v (%v), want revoked for %s", s, err, sessions.ReasonFactorsChanged)
		}
		if n := h.OwnChanges(alice.ID, audit.ActionChangePassword); n != 1 {
			t.Errorf("the new password is in the audit log %d times, want once", n)
		}
		// The next sign-in takes the new password and asks for nothing more.
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		if p := br.SignIn(a.URL, alice.Email, temporaryPassword); p.Status != http.StatusUnauthorized {
			t.Errorf("the temporary password still signs in: %s (%d)", p.URL, p.Status)
		}
		p = br.SignIn(a.URL, alice.Email, mine)
		app.Exchange(t, app.Code(t, p, a), a)
	})
}

// TestLogin_TemporaryPasswordAfterFactors: the new-password form comes
// after the second factor, or after enrolling one, and the session keeps
// the two factors proven.
func TestLogin_TemporaryPasswordAfterFactors(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.RequireMFA = true })
	app := h.NewRP("app")
	const mine = "my own after two factors"

	t.Run("with a second factor", func(t *testing.T) {
		bob := h.CreateUser("bob@example.com", password)
		e, err := h.Srv.TOTP.Begin(h.Ctx, bob.ID, "test", bob.Email)
		if err != nil {
			t.Fatal(err)
		}
		secret := e.Secret
		if _, err := h.Srv.TOTP.Confirm(h.Ctx, bob.ID, "test", mfa.GenerateCode(secret, time.Now().Add(-30*time.Second))); err != nil {
			t.Fatal(err)
		}
		setTemporary(t, h, bob)
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		p := br.SignIn(a.URL, bob.Email, temporaryPassword)
		servertest.WantPage(t, p, "/login/totp", http.StatusOK, "")
		p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {mfa.GenerateCode(secret, time.Now())}})
		servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "Choose your password")
		if liveSessions(t, h, bob) != 0 {
			t.Fatal("a session was made before the new password")
		}
		p = br.Post(h.Issuer+"/login/new-password", url.Values{"csrf_token": {p.CSRF(t)}, "new_password": {mine}, "confirm_password": {mine}})
		_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
		assertTwoFactor(t, claims, "otp")
	})

	t.Run("enrolling one first", func(t *testing.T) {
		carol := h.CreateUser("carol@example.com", password)
		setTemporary(t, h, carol)
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		p := br.SignIn(a.URL, carol.Email, temporaryPassword)
		_, _, p = enroll(t, h, br, p, time.Now()) // follows the codes page's continue link
		servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "Choose your password")
		if liveSessions(t, h, carol) != 0 {
			t.Fatal("a session was made before the new password")
		}
		p = br.Post(h.Issuer+"/login/new-password", url.Values{"csrf_token": {p.CSRF(t)}, "new_password": {mine}, "confirm_password": {mine}})
		_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
		assertTwoFactor(t, claims, "otp")
	})
}

// TestLogin_TemporaryPasswordExpired: a temporary password not replaced in
// time no longer signs in, and the page says what to do.
func TestLogin_TemporaryPasswordExpired(t *testing.T) {
	h := servertest.New(t)
	dan := h.CreateUser("dan@example.com", password)
	setTemporary(t, h, dan)
	if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE password_credentials SET expires_at = now() - interval '1 minute' WHERE user_id = $1`,
		dan.ID); err != nil {
		t.Fatal(err)
	}
	app := h.NewRP("app")
	p := servertest.NewBrowser(t).SignIn(app.AuthURL().URL, dan.Email, temporaryPassword)
	servertest.WantPage(t, p, "/login", http.StatusForbidden, "This temporary password has expired. Ask your administrator for a new one.")
	if liveSessions(t, h, dan) != 0 {
		t.Error("an expired temporary password made a session")
	}
}
