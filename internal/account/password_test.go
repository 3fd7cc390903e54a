package account_test

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

func TestAccount_ChangePassword(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	app := e.NewRP("app", func(c *clients.Client) { c.BackchannelLogoutURI = "http://127.0.0.1:1/backchannel" })
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	p := e.signIn(t, laptop, alice.Email, "")
	if !strings.Contains(p.Body, `action="/account/password"`) {
		t.Fatalf("the account page has no change-password form:\n%s", p.Body)
	}
	onPhone := e.signInTo(t, phone, app, alice.Email)
	laptopSID := e.mustSession(t, laptop).ID
	csrf := p.CSRF(t)
	change := e.URL + "/account/password"
	const newPassword = "a new and longer passphrase"

	form := func(current, next, confirm string) url.Values {
		return url.Values{"csrf_token": {csrf}, "current_password": {current}, "new_password": {next}, "confirm_password": {confirm}}
	}
	cases := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"no CSRF token", url.Values{"current_password": {password}, "new_password": {newPassword}, "confirm_password": {newPassword}},
			http.StatusForbidden, "could not be verified"},
		{"no current password", form("", newPassword, newPassword), http.StatusBadRequest, "Enter your current password and the new one"},
		{"confirmation differs", form(password, newPassword, newPassword+"!"), http.StatusBadRequest, "confirmation differ"},
		{"too short", form(password, "short", "short"), http.StatusBadRequest, "The new password must be at least 8 characters"},
		{"common", form(password, "Password1", "Password1"), http.StatusBadRequest, "The new password is one of the most common passwords"},
		{"wrong current password", form("not my password", newPassword, newPassword), http.StatusUnauthorized, "password is not right"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := laptop.Post(change, tc.form)
			if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
				t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
			}
			if tc.status != http.StatusForbidden && !strings.Contains(p.Body, "Your password was not changed") {
				t.Errorf("the refusal does not say nothing changed:\n%s", p.Body)
			}
			if err := e.Srv.Users.VerifyPassword(e.Ctx, alice.ID, password); err != nil {
				t.Fatalf("the old password no longer works: %v", err)
			}
			if !e.live(t, onPhone.sid) || !onPhone.active(t) {
				t.Fatal("a refused change ended the phone's session or its tokens")
			}
			if n := e.OwnChanges(alice.ID, audit.ActionChangePassword); n != 0 {
				t.Fatalf("a refused change is in the audit log %d times", n)
			}
		})
	}

	t.Run("the current password changes it and signs out the other sessions", func(t *testing.T) {
		p := laptop.Post(change, form(password, newPassword, newPassword))
		servertest.WantPage(t, p, "/account", http.StatusOK, "Your password is changed")
		if err := e.Srv.Users.VerifyPassword(e.Ctx, alice.ID, password); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Errorf("old password: %v, want ErrInvalidCredentials", err)
		}
		if err := e.Srv.Users.VerifyPassword(e.Ctx, alice.ID, newPassword); err != nil {
			t.Errorf("new password: %v", err)
		}
		if got := e.revokedReason(t, onPhone.sid); got != sessions.ReasonFactorsChanged {
			t.Errorf("phone session: revoked reason %q, want %q", got, sessions.ReasonFactorsChanged)
		}
		if onPhone.active(t) {
			t.Error("the phone's access token is still active")
		}
		// The app is told (this instance's clock runs behind, so its
		// receiver would refuse the token as expired: the queue is checked).
		var queued int
		if err := e.DB.Pool.QueryRow(e.Ctx, `SELECT count(*) FROM outbox WHERE kind = 'logout' AND sid = $1 AND client_id = 'app'`,
			onPhone.sid).Scan(&queued); err != nil || queued != 1 {
			t.Errorf("logout notifications queued for the phone's session: %d (%v), want 1", queued, err)
		}
		if !e.live(t, laptopSID) {
			t.Error("the session that changed the password was ended")
		}
		if n := e.OwnChanges(alice.ID, audit.ActionChangePassword); n != 1 {
			t.Errorf("the change is in the audit log %d times, want once", n)
		}
		// The account page lists it, newest first, as said to its owner.
		for _, want := range []string{
			`<li class="audit-entry" data-action="users.change_password">You changed your password`,
			`<li class="audit-entry" data-action="sessions.revoke">1 session ended: your password, passkeys or two-factor authentication changed`,
		} {
			if !strings.Contains(p.Body, want) {
				t.Errorf("the account page lacks %q", want)
			}
		}
		if strings.Index(p.Body, `data-action="users.change_password"`) > strings.Index(p.Body, `data-action="sessions.revoke"`) {
			t.Error("the account's activity is not newest first")
		}
		// A new browser signs in with the new password, not the old one.
		fresh := servertest.NewBrowser(t)
		if p := fresh.SignIn(e.URL+"/account", alice.Email, password); p.Status != http.StatusUnauthorized {
			t.Errorf("sign-in with the old password: %d, want 401", p.Status)
		}
		if p := fresh.SignIn(e.URL+"/account", alice.Email, newPassword); p.URL.Path != "/account" || p.Status != http.StatusOK {
			t.Errorf("sign-in with the new password ended at %s (%d)", p.URL, p.Status)
		}
	})
}

// TestAccount_ChangePassword_Breached: with IDP_BREACHED_PASSWORDS_URL set,
// a new password the Pwned Passwords service knows is refused.
func TestAccount_ChangePassword_Breached(t *testing.T) {
	const leaked = "leaked in a breach once"
	sum := sha1.Sum([]byte(leaked))
	digest := strings.ToUpper(hex.EncodeToString(sum[:]))
	var asked []string
	var mu sync.Mutex
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/range/"+digest[:5] {
			fmt.Fprintf(w, "%s:7\r\n", digest[5:])
		}
	}))
	t.Cleanup(api.Close)
	e := newEnv(t, func(c *server.Config) { c.BreachedPasswordsURL = api.URL })
	alice := e.CreateUser("alice@example.com", password)
	b := servertest.NewBrowser(t)
	csrf := e.signIn(t, b, alice.Email, "").CSRF(t)

	p := b.Post(e.URL+"/account/password", url.Values{"csrf_token": {csrf}, "current_password": {password},
		"new_password": {leaked}, "confirm_password": {leaked}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "has appeared in a known data breach") {
		t.Fatalf("status %d, want 400 naming the breach:\n%s", p.Status, p.Body)
	}
	if same, err := e.Srv.Users.SameAsCurrent(e.Ctx, alice.ID, password); err != nil || !same {
		t.Fatalf("the refusal changed the password (%v)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Asked at the account's creation, then about the new password: by
	// 5-digit prefixes only.
	if len(asked) != 2 || asked[1] != "/range/"+digest[:5] {
		t.Errorf("the service was asked %v, want the new password's 5-digit prefix last", asked)
	}
}
