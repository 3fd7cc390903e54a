package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/alerts"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

const firefoxOnLinux = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

// userAgent makes br send ua, as a real browser names itself.
type userAgent struct {
	ua   string
	next http.RoundTripper
}

func (u userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return u.next.RoundTrip(r)
}

func browserAs(t *testing.T, ua string) *servertest.Browser {
	br := servertest.NewBrowser(t)
	br.Client.Transport = userAgent{ua: ua, next: http.DefaultTransport}
	return br
}

// alertRows counts the alerts queued so far (each becomes one mail).
func alertRows(t *testing.T, h *servertest.Harness) int {
	t.Helper()
	return dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1`, alerts.OutboxKind)
}

// notMe opens a "This wasn't me" link in br and presses its button.
func notMe(t *testing.T, h *servertest.Harness, br *servertest.Browser, link string) servertest.Page {
	t.Helper()
	p := br.Get(link)
	servertest.WantPage(t, p, alerts.LinkPath, http.StatusOK, "This wasn't me")
	servertest.CheckMarkup(t, p.Body)
	u, _ := url.Parse(link)
	return br.Post(h.Issuer+alerts.LinkPath, url.Values{"csrf_token": {p.CSRF(t)}, "token": {u.Query().Get("token")}})
}

func sessionReason(t *testing.T, h *servertest.Harness, sid string) string {
	t.Helper()
	return dbtest.Value[string](t, h.DB.Pool, `SELECT coalesce(revoked_reason, '') FROM sso_sessions WHERE id = $1`, sid)
}

// TestAlerts_NewDevice: the account's first sign-in alerts nobody; a
// second from the same browser neither; one from a new browser mails the
// owner what happened, when, from which browser and address, with a
// "This wasn't me" link. Its page changes nothing; its button ends that
// session alone (its app told by back-channel logout), is audited, and
// leads to the password reset; the link then works no more.
func TestAlerts_NewDevice(t *testing.T) {
	h, smtp := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)

	laptop := browserAs(t, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15")
	own := signInTo(t, laptop, appA, recvA, alice.Email)
	again := signInTo(t, laptop, appA, recvA, alice.Email, oauth2.SetAuthURLParam("prompt", "login"))
	if own.sid == again.sid {
		t.Fatal("setup: prompt=login made no new session")
	}
	if n := alertRows(t, h); n != 0 {
		t.Fatalf("%d alerts for the first browser's sign-ins, want none", n)
	}
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM known_devices WHERE user_id = $1`, alice.ID); n != 1 {
		t.Fatalf("%d known devices, want 1", n)
	}

	phone := browserAs(t, firefoxOnLinux)
	stolen := signInTo(t, phone, appA, recvA, alice.Email)
	m := smtp.Wait(alice.Email, 1, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "New sign-in") {
		t.Errorf("subject %q", s)
	}
	for _, want := range []string{"Browser: Firefox on Linux", "Address: 127.0.0.1", "When: ", "This wasn't me", "7 days"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("the mail does not say %q:\n%s", want, m.Text)
		}
	}
	for _, want := range []string{"Firefox on Linux", "127.0.0.1", "This wasn&#39;t me"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("the HTML part does not say %q:\n%s", want, m.HTML)
		}
	}
	link := m.Link(t)
	if !strings.HasPrefix(link, h.Issuer+alerts.LinkPath+"?token=") {
		t.Fatalf("link %q", link)
	}
	if n := alertRows(t, h); n != 1 {
		t.Fatalf("%d alerts, want 1 (the new browser's)", n)
	}
	token, _ := url.Parse(link)
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM alert_links WHERE token_hash = sha256(convert_to($1, 'UTF8')) AND sid = $2`,
		token.Query().Get("token"), stolen.sid); n != 1 {
		t.Fatalf("%d links hold the token's hash for the new session, want 1", n)
	}

	// The person, on their own laptop, opens the link: the page alone
	// changes nothing.
	before := h.Stored(t)
	p := laptop.Get(link)
	servertest.WantPage(t, p, alerts.LinkPath, http.StatusOK, "end the session that was signed in from the new device")
	csrf := p.CSRF(t)
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
		t.Fatalf("GET of the link changed %v", changed)
	}
	if sessionReason(t, h, stolen.sid) != "" {
		t.Fatal("GET ended the session")
	}
	// A POST without the page's CSRF token is refused and changes nothing.
	refused := laptop.Post(h.Issuer+alerts.LinkPath, url.Values{"token": {token.Query().Get("token")}})
	if refused.Status != http.StatusForbidden {
		t.Fatalf("POST without CSRF: %d", refused.Status)
	}
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
		t.Fatalf("a refused POST changed %v", changed)
	}

	p = notMe(t, h, laptop, link)
	servertest.WantPage(t, p, alerts.LinkPath, http.StatusOK, "The session from the new device has ended")
	if !strings.Contains(p.Body, `href="/login/forgot"`) || !strings.Contains(p.Body, "Continue to choose a new password") {
		t.Errorf("the page does not lead to the password reset:\n%s", p.Body)
	}
	if r := sessionReason(t, h, stolen.sid); r != alerts.ReasonUserReported {
		t.Fatalf("the new device's session: revoked reason %q, want %q", r, alerts.ReasonUserReported)
	}
	if sessionReason(t, h, own.sid) != "" || sessionReason(t, h, again.sid) != "" {
		t.Error("the owner's own sessions ended too")
	}
	var told bool
	for _, c := range recvA.WaitFor(t, 1) {
		told = told || c.SID == stolen.sid
	}
	if !told {
		t.Errorf("app A was not told that session %s ended", stolen.sid)
	}
	stolen.assertDead(t)
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = $1 AND target = $2`,
		alerts.ActionReported, alice.ID); n != 1 {
		t.Errorf("%d audit rows of the report, want 1", n)
	}

	// Used once, the link works no more.
	after := h.Stored(t)
	if p := laptop.Get(link); p.Status != http.StatusGone || !strings.Contains(p.Body, "already used") {
		t.Errorf("reused link: %d\n%s", p.Status, p.Body)
	}
	if p := laptop.Post(h.Issuer+alerts.LinkPath, url.Values{"csrf_token": {csrf}, "token": {token.Query().Get("token")}}); p.Status != http.StatusGone {
		t.Errorf("reused link, POST: %d", p.Status)
	}
	if changed := after.Changed(h.Stored(t)); len(changed) != 0 {
		t.Errorf("a reused link changed %v", changed)
	}
	for name, tok := range map[string]string{"tampered": token.Query().Get("token") + "x", "empty": ""} {
		if p := laptop.Get(h.Issuer + alerts.LinkPath + "?token=" + url.QueryEscape(tok)); p.Status != http.StatusBadRequest {
			t.Errorf("%s link: %d", name, p.Status)
		}
	}
}

// TestAlerts_PasswordChange: a password change mails its owner, and the
// mail's "This wasn't me" ends every session, the one that changed it
// too, with every app told.
func TestAlerts_PasswordChange(t *testing.T) {
	h, smtp := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	laptop := browserAs(t, firefoxOnLinux)
	s := signInTo(t, laptop, appA, recvA, alice.Email)

	p := laptop.Get(h.Issuer + "/account")
	const newPassword = "a new and longer passphrase"
	p = laptop.Post(h.Issuer+"/account/password", url.Values{"csrf_token": {p.CSRF(t)}, "current_password": {password},
		"new_password": {newPassword}, "confirm_password": {newPassword}})
	if p.Status != http.StatusOK {
		t.Fatalf("change password: %d\n%s", p.Status, p.Body)
	}
	m := smtp.Wait(alice.Email, 1, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "password was changed") {
		t.Errorf("subject %q", s)
	}
	for _, want := range []string{"Browser: Firefox on Linux", "Address: 127.0.0.1"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("the mail does not say %q:\n%s", want, m.Text)
		}
	}
	if sessionReason(t, h, s.sid) != "" {
		t.Fatal("setup: the changing session ended")
	}
	other := servertest.NewBrowser(t)
	p = notMe(t, h, other, m.Link(t))
	servertest.WantPage(t, p, alerts.LinkPath, http.StatusOK, "Every session of your account has ended")
	if r := sessionReason(t, h, s.sid); r != alerts.ReasonUserReported {
		t.Fatalf("the session that changed the password: reason %q", r)
	}
	if n := liveSessions(t, h, users.User{ID: alice.ID}); n != 0 {
		t.Errorf("%d sessions live", n)
	}
	var told bool
	for _, c := range recvA.WaitFor(t, 1) {
		told = told || c.SID == s.sid
	}
	if !told {
		t.Error("app A was not told")
	}
}

// TestAlerts_FactorsAndAdminRevoke: a change of second factors (the call
// the account page and the sign-in make) and an administrator's
// revoke-all each mail the owner once; the revoke-all's mail, with no
// session left to end, leads to the password reset instead.
func TestAlerts_FactorsAndAdminRevoke(t *testing.T) {
	h, smtp := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	br := servertest.NewBrowser(t)
	s := signInTo(t, br, appA, recvA, alice.Email)

	if err := h.Srv.Sessions.FactorsChanged(h.Ctx, alice.ID, s.sid, audit.ActionRegenerateRecoveryCodes); err != nil {
		t.Fatal(err)
	}
	m := smtp.Wait(alice.Email, 1, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "sign-in of your Acme Login account changed") {
		t.Errorf("factors: subject %q", s)
	}
	if !strings.HasPrefix(m.Link(t), h.Issuer+alerts.LinkPath+"?token=") {
		t.Errorf("factors: link %q", m.Link(t))
	}

	res, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: alice.ID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: audit.Admin("someone")})
	if err != nil || res.Sessions != 1 {
		t.Fatalf("revoke-all: %+v, %v", res, err)
	}
	m = smtp.Wait(alice.Email, 2, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "You were signed out of Acme Login") {
		t.Errorf("revoke-all: subject %q", s)
	}
	if !strings.Contains(m.Text, "By: an administrator") || m.Link(t) != h.Issuer+alerts.ForgotPath {
		t.Errorf("revoke-all mail:\n%s", m.Text)
	}
	// A sign-out of one's own is no alert (nor is signing in again from
	// the same browser).
	s = signInTo(t, br, appA, recvA, alice.Email)
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: []string{s.sid}, Reason: sessions.ReasonUserSignOut}); err != nil {
		t.Fatal(err)
	}
	if n := alertRows(t, h); n != 2 {
		t.Errorf("%d alerts, want 2", n)
	}
}

// TestAlerts_Off: without SMTP, no device cookie is set, no device
// recorded, no alert queued, and the link's page is not there.
func TestAlerts_Off(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	for range 2 {
		br := browserAs(t, firefoxOnLinux)
		signInTo(t, br, app, nil, alice.Email)
		u, _ := url.Parse(h.Issuer)
		for _, c := range br.Client.Jar.Cookies(u) {
			if strings.Contains(c.Name, "device") {
				t.Errorf("device cookie %s set without mail", c.Name)
			}
		}
	}
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM known_devices`); n != 0 {
		t.Errorf("%d known devices without mail", n)
	}
	if n := alertRows(t, h); n != 0 {
		t.Errorf("%d alerts without mail", n)
	}
	if p := servertest.NewBrowser(t).Get(h.Issuer + alerts.LinkPath + "?token=x"); p.Status != http.StatusNotFound {
		t.Errorf("the link's page without mail: %d", p.Status)
	}
}

// TestAlerts_Sweeps: the janitor deletes devices unseen for longer than
// their cookie lives and links a day past expiry, and keeps the rest.
func TestAlerts_Sweeps(t *testing.T) {
	h, _ := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	now := h.Srv.Config.Now()
	old, fresh := now.Add(-alerts.DeviceLifetime-time.Hour), now.Add(-time.Hour)
	if _, err := h.DB.Pool.Exec(h.Ctx, `
		INSERT INTO known_devices (user_id, device_hash, first_seen, last_seen)
		VALUES ($1, 'old', $2, $2), ($1, 'fresh', $3, $3);
		`, alice.ID, old, fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DB.Pool.Exec(h.Ctx, `
		INSERT INTO alert_links (token_hash, user_id, event, created_at, expires_at)
		VALUES ('old', $1, 'password_changed', $2, $3), ('fresh', $1, 'password_changed', $2, $4)`,
		alice.ID, old, now.Add(-25*time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Srv.CleanUp(h.Ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"known_devices", "alert_links"} {
		col := map[string]string{"known_devices": "device_hash", "alert_links": "token_hash"}[table]
		if got := dbtest.Value[string](t, h.DB.Pool, `SELECT string_agg(convert_from(`+col+`, 'UTF8'), ',') FROM `+table); got != "fresh" {
			t.Errorf("%s after the sweep: %q, want fresh", table, got)
		}
	}
}

// TestAlerts_Passkey: adding a passkey is a change of second factors
// (mailed, with the browser it was added from); a passkey sign-in from a
// new browser is a new-device alert like any other.
func TestAlerts_Passkey(t *testing.T) {
	h, smtp := withMail(t, servertest.Localhost)
	alice := h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	laptop := browserAs(t, firefoxOnLinux)
	signInTo(t, laptop, app, nil, alice.Email)
	auth := h.Authenticator()
	laptop.AddPasskey(h, auth, password, "")
	m := smtp.Wait(alice.Email, 1, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "sign-in of your Acme Login account changed") || !strings.Contains(m.Text, "Firefox on Linux") {
		t.Errorf("passkey added: subject %q:\n%s", s, m.Text)
	}

	phone := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := phone.SignInWithPasskey(a.URL, auth)
	app.Code(t, p, a)
	m = smtp.Wait(alice.Email, 2, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "New sign-in") {
		t.Errorf("passkey sign-in from a new browser: subject %q", s)
	}
	if n := alertRows(t, h); n != 2 {
		t.Errorf("%d alerts, want 2", n)
	}
}

// TestAlerts_TwoFactorSignIn: a password-and-code sign-in from a new
// browser is a new-device alert.
func TestAlerts_TwoFactorSignIn(t *testing.T) {
	h, smtp := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	signInTo(t, servertest.NewBrowser(t), app, nil, alice.Email)
	phone := h.EnrollTOTP(alice)

	a := app.AuthURL()
	p := browserAs(t, firefoxOnLinux).SignInWithCode(a.URL, alice.Email, password, phone)
	app.Code(t, p, a)
	m := smtp.Wait(alice.Email, 1, mailWait)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "New sign-in") || !strings.Contains(m.Text, "Firefox on Linux") {
		t.Errorf("subject %q:\n%s", s, m.Text)
	}
}
