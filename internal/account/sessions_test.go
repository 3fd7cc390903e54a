package account_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// outbox counts queued back-channel notifications for sid to clientID.
func (e *env) outbox(t *testing.T, sid, clientID string) int {
	t.Helper()
	var n int
	err := e.DB.Pool.QueryRow(e.Ctx,
		`SELECT count(*) FROM outbox WHERE kind = 'logout' AND sid::text = $1 AND client_id = $2`, sid, clientID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAccount_Sessions(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	bob := e.CreateUser("bob@example.com", password)
	// app-a and app-b want to be told of logouts; app-c does not. (Whether
	// the tokens arrive is the delivery worker's test; here the outbox
	// rows are what the account pages are responsible for.)
	logoutURI := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(logoutURI.Close)
	appA := e.NewRP("app-a", func(c *clients.Client) { c.BackchannelLogoutURI = logoutURI.URL + "/a" })
	appB := e.NewRP("app-b", func(c *clients.Client) { c.BackchannelLogoutURI = logoutURI.URL + "/b" })
	appC := e.NewRP("app-c")

	laptop, phone, bobs := servertest.NewBrowser(t), servertest.NewBrowser(t), servertest.NewBrowser(t)
	laptopA := e.signInTo(t, laptop, appA, alice.Email)
	phoneB := e.signInTo(t, phone, appB, alice.Email)
	phoneC := e.signInTo(t, phone, appC, alice.Email)
	bobA := e.signInTo(t, bobs, appA, bob.Email)
	if laptopA.sid == phoneB.sid || phoneB.sid != phoneC.sid {
		t.Fatalf("sids: laptop %s, phone %s and %s; want two sessions", laptopA.sid, phoneB.sid, phoneC.sid)
	}
	for _, app := range []signedInApp{laptopA, phoneB, phoneC, bobA} {
		if !app.active(t) {
			t.Fatalf("a fresh token of %s is inactive", app.rp.ID)
		}
	}

	t.Run("lists both browsers with their apps", func(t *testing.T) {
		p := laptop.Get(e.URL + "/account")
		servertest.WantPage(t, p, "/account", http.StatusOK, "Where you are signed in")
		laptopAt := strings.Index(p.Body, `id="session-`+laptopA.sid+`"`)
		phoneAt := strings.Index(p.Body, `id="session-`+phoneB.sid+`"`)
		badgeAt := strings.Index(p.Body, `id="this-device"`)
		if laptopAt < 0 || phoneAt < 0 {
			t.Fatalf("the list lacks a session (laptop at %d, phone at %d):\n%s", laptopAt, phoneAt, p.Body)
		}
		if !(laptopAt < badgeAt && badgeAt < phoneAt) || strings.Count(p.Body, `id="this-device"`) != 1 {
			t.Errorf("\"This device\" does not mark the laptop's session, first and only")
		}
		if strings.Contains(p.Body, bobA.sid) {
			t.Error("alice's page shows bob's session")
		}
		phoneItem := p.Body[phoneAt:]
		for _, app := range []string{"App app-b <span class=\"muted\">(app-b)</span>", "App app-c"} {
			if !strings.Contains(phoneItem, app) {
				t.Errorf("the phone's session does not list %s", app)
			}
		}
		if !strings.Contains(p.Body[laptopAt:phoneAt], "App app-a") {
			t.Error("the laptop's session does not list app-a")
		}
		if !strings.Contains(p.Body, "127.0.0.1") || !strings.Contains(p.Body, "Go-http-client") {
			t.Error("the list lacks the address or the device")
		}
		if p := phone.Get(e.URL + "/account"); strings.Index(p.Body, `id="this-device"`) < strings.Index(p.Body, `id="session-`+phoneB.sid+`"`) {
			t.Error("on the phone, \"This device\" is not the phone's session")
		}
	})

	laptopCSRF := laptop.Get(e.URL + "/account").CSRF(t)
	phoneCSRF := phone.Get(e.URL + "/account").CSRF(t)
	signOut := func(sid string) string { return e.URL + "/account/sessions/" + sid + "/sign-out" }

	t.Run("bad requests end nothing", func(t *testing.T) {
		cases := []struct {
			name   string
			url    string
			form   url.Values
			status int
			want   string
		}{
			{"no CSRF token", signOut(phoneB.sid), url.Values{}, http.StatusForbidden, "could not be verified"},
			{"forged CSRF token", signOut(phoneB.sid), url.Values{"csrf_token": {"forged"}}, http.StatusForbidden, "could not be verified"},
			{"another browser's CSRF token", signOut(phoneB.sid), url.Values{"csrf_token": {phoneCSRF}}, http.StatusForbidden, "could not be verified"},
			{"everywhere without a CSRF token", e.URL + "/account/sign-out-everywhere", url.Values{}, http.StatusForbidden, "could not be verified"},
			{"someone else's session", signOut(bobA.sid), url.Values{"csrf_token": {laptopCSRF}}, http.StatusNotFound, "not found among yours"},
			{"no such session", signOut("not-a-session"), url.Values{"csrf_token": {laptopCSRF}}, http.StatusNotFound, "not found among yours"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p := laptop.Post(tc.url, tc.form)
				if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
					t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
				}
				for _, sid := range []string{laptopA.sid, phoneB.sid, bobA.sid} {
					if !e.live(t, sid) {
						t.Fatalf("session %s ended by a bad request", sid)
					}
				}
			})
		}
	})

	t.Run("sign out another session", func(t *testing.T) {
		p := laptop.Post(signOut(phoneB.sid), url.Values{"csrf_token": {laptopCSRF}})
		servertest.WantPage(t, p, "/account", http.StatusOK, "That session is signed out")
		if strings.Contains(p.Body, `id="session-`+phoneB.sid+`"`) {
			t.Error("the ended session is still listed")
		}
		if got := e.revokedReason(t, phoneB.sid); got != sessions.ReasonUserSignOut {
			t.Errorf("phone session: revoked reason %q, want %q", got, sessions.ReasonUserSignOut)
		}
		if !e.live(t, laptopA.sid) || !e.live(t, bobA.sid) {
			t.Error("signing out the phone ended another session")
		}
		if p := phone.Get(e.URL + "/account"); !p.IsLoginForm() {
			t.Errorf("the phone's next request: %s, want the login form", p.URL)
		}
		if phoneB.active(t) || phoneC.active(t) {
			t.Error("the phone's access tokens still work")
		}
		// app-b asked to be told; app-c has no back-channel URI.
		if n := e.outbox(t, phoneB.sid, "app-b"); n != 1 {
			t.Errorf("outbox rows for app-b: %d, want 1", n)
		}
		if n := e.outbox(t, phoneB.sid, "app-c"); n != 0 {
			t.Errorf("outbox rows for app-c: %d, want 0", n)
		}
	})

	t.Run("sign out this device", func(t *testing.T) {
		tablet := servertest.NewBrowser(t)
		e.signIn(t, tablet, alice.Email, "")
		s := e.mustSession(t, tablet)
		p := tablet.Post(signOut(s.ID), url.Values{"csrf_token": {tablet.Get(e.URL + "/account").CSRF(t)}})
		servertest.WantPage(t, p, "/account/sessions/"+s.ID+"/sign-out", http.StatusOK, "You are signed out on this device")
		if e.cookie(tablet) != "" {
			t.Error("the session cookie was not cleared")
		}
		if e.live(t, s.ID) || !e.live(t, laptopA.sid) {
			t.Error("want the tablet's session ended and the laptop's live")
		}
	})

	t.Run("sign out everywhere", func(t *testing.T) {
		desktop := servertest.NewBrowser(t)
		desktopA := e.signInTo(t, desktop, appA, alice.Email)
		// Asked first, saying what ends; nothing ends until confirmed.
		p := laptop.Post(e.URL+"/account/sign-out-everywhere", url.Values{"csrf_token": {laptopCSRF}})
		servertest.WantPage(t, p, "/account/sign-out-everywhere", http.StatusOK, "This ends your 2 sessions on every device")
		servertest.CheckMarkup(t, p.Body)
		if !strings.Contains(p.Body, "tells the 1 app you signed in to") {
			t.Errorf("the confirmation does not say which apps are told:\n%s", p.Body)
		}
		if live, err := e.Srv.Sessions.ListByUser(e.Ctx, alice.ID); err != nil || len(live) != 2 {
			t.Fatalf("%d of alice's sessions live before the confirmation (%v), want 2", len(live), err)
		}
		p = laptop.Post(e.URL+"/account/sign-out-everywhere", url.Values{"csrf_token": {p.CSRF(t)}, "confirm": {"yes"}})
		servertest.WantPage(t, p, "/account/sign-out-everywhere", http.StatusOK, "You are signed out on every device")
		if !strings.Contains(p.Body, "2 sessions ended; 2 logout notifications on the way to the apps") {
			t.Errorf("the signed-out page does not say what ended:\n%s", p.Body)
		}
		live, err := e.Srv.Sessions.ListByUser(e.Ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 0 {
			t.Fatalf("%d of alice's sessions still live", len(live))
		}
		for _, app := range []signedInApp{laptopA, desktopA} {
			if app.active(t) {
				t.Errorf("token of session %s still active", app.sid)
			}
			if n := e.outbox(t, app.sid, "app-a"); n != 1 {
				t.Errorf("outbox rows for session %s at app-a: %d, want 1", app.sid, n)
			}
		}
		if got := e.revokedReason(t, desktopA.sid); got != sessions.ReasonUserSignOutAll {
			t.Errorf("revoked reason %q, want %q", got, sessions.ReasonUserSignOutAll)
		}
		for _, b := range []*servertest.Browser{laptop, desktop} {
			if p := b.Get(e.URL + "/account"); !p.IsLoginForm() {
				t.Errorf("after signing out everywhere: %s, want the login form", p.URL)
			}
		}
		if !e.live(t, bobA.sid) || !bobA.active(t) {
			t.Error("bob's session or token ended with alice's")
		}
	})
}

// TestAccount_RememberedSessions: the list says which sessions were kept
// signed in ("keep me signed in on this device") and until when at most,
// and which end with the browser.
func TestAccount_RememberedSessions(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	e.signIn(t, laptop, alice.Email, "")
	login := phone.Get(e.URL + "/account")
	if !login.IsLoginForm() {
		t.Fatalf("want the sign-in form, got %s", login.URL)
	}
	phone.Post(e.URL+"/login", url.Values{"csrf_token": {login.CSRF(t)}, "email": {alice.Email},
		"password": {password}, "remember": {"1"}})
	kept, once := e.mustSession(t, phone), e.mustSession(t, laptop)
	if !kept.Remember || once.Remember {
		t.Fatalf("remember: phone %v, laptop %v; want the phone's only", kept.Remember, once.Remember)
	}

	p := laptop.Get(e.URL + "/account")
	for _, tc := range []struct {
		sid, want string
	}{
		{kept.ID, `data-remembered="true">Remembered on this device, at most until <time datetime="` +
			kept.AbsoluteExpiresAt.UTC().Format(time.RFC3339) + `">`},
		{once.ID, `data-remembered="false">Until the browser is closed`},
	} {
		if !strings.Contains(p.Body, `id="remembered-`+tc.sid+`" `+tc.want) {
			t.Errorf("session %s is not listed with %q:\n%s", tc.sid, tc.want, p.Body)
		}
	}
}
