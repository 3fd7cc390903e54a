package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// signOutWait bounds how long a back-channel logout may take to show in
// an app.
const signOutWait = 10 * time.Second

// signInToBoth signs the tab in to appA with the password, then to appB
// through single sign-on, and returns the provider session's sid.
func (b *tab) signInToBoth(appA, appB *demoapptest.App, shot string) string {
	b.t.Helper()
	b.signInWithPassword(appA.URL, shot)
	b.do("reach App A signed in", chromedp.WaitVisible(chromedp.ID("signed-in")))
	sid := b.text("#sid")
	b.do("open App B", chromedp.Navigate(appB.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	b.do("sign in to App B", chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	if got := b.text("#sid"); got != sid {
		b.t.Fatalf("App B is in provider session %q, App A in %q: want one SSO session", got, sid)
	}
	return sid
}

// twoDevices is a person signed in to App A and App B on a laptop and a
// phone, each device with its own provider session.
type twoDevices struct {
	h             *servertest.Harness
	appA, appB    *demoapptest.App
	laptop, phone *tab
}

func signedInOnTwoDevices(t *testing.T) twoDevices {
	t.Helper()
	h := servertest.New(t)
	h.CreateUser(email, password)
	d := twoDevices{h: h, appA: demoapptest.Start(t, h, "app-a", "App A"), appB: demoapptest.Start(t, h, "app-b", "App B")}
	d.laptop = &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	d.phone = newPrivateTab(t, d.laptop)
	d.laptop.signInToBoth(d.appA, d.appB, "")
	d.phone.signInToBoth(d.appA, d.appB, "")
	return d
}

// waitSignedOut reloads the app until it shows the person signed out, by
// the back channel (bounded).
func (b *tab) waitSignedOut(app *demoapptest.App, who string) {
	b.t.Helper()
	deadline := time.Now().Add(signOutWait)
	for {
		b.do("reload "+app.ID, chromedp.Navigate(app.URL+"/"), chromedp.WaitVisible(chromedp.ID("app-name")))
		if b.eval(`document.getElementById("signed-out") ? "out" : "in"`) == "out" {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s still shows %s signed in %s after the sessions were ended", app.ID, who, signOutWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if notice := b.text("#notice"); !strings.Contains(notice, "back-channel logout") {
		b.t.Errorf("%s in %s says %q, want the back-channel logout named", app.ID, who, notice)
	}
}

// TestBrowser_AdminRevokesAll: a person is signed in to App A and App B on
// two devices; an administrator with 2FA, on a third, finds them in the
// console and clicks "Revoke all sessions". Both apps sign the person out
// on both devices, and the console shows every notification delivered.
// The provider runs with an operator's brand colour, which the pages show.
func TestBrowser_AdminRevokesAll(t *testing.T) {
	began := time.Now()
	const brandColor = "#0a7d53" // rgb(10, 125, 83)
	h := servertest.New(t, func(c *server.Config) { c.Brand = web.Brand{Name: "Acme SSO", Color: brandColor} })
	h.CreateUser(email, password)
	const adminEmail = "ada@example.com"
	adm, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: adminEmail, Name: "Ada", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	en, err := h.Srv.TOTP.Begin(h.Ctx, adm.ID, "test", adm.Email)
	if err != nil {
		t.Fatal(err)
	}
	enrolledAt := time.Now()
	if _, err := h.Srv.TOTP.Confirm(h.Ctx, adm.ID, "test", mfa.GenerateCode(en.Secret, enrolledAt)); err != nil {
		t.Fatal(err)
	}
	appA := demoapptest.Start(t, h, "app-a", "App A")
	appB := demoapptest.Start(t, h, "app-b", "App B")

	laptop := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	phone := newPrivateTab(t, laptop)
	console := newPrivateTab(t, laptop)

	sid1 := laptop.signInToBoth(appA, appB, "")
	sid2 := phone.signInToBoth(appA, appB, "")
	if sid1 == sid2 {
		t.Fatalf("two browser contexts share provider session %s", sid1)
	}

	// The console is for administrators only.
	laptop.do("open the console as a user", chromedp.Navigate(h.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := laptop.text(".error"); msg != "This page is for administrators." {
		t.Errorf("a user opening /admin sees %q, want the administrators-only page", msg)
	}
	laptop.screenshot("admin-forbidden")

	// The administrator signs in with a password and a code.
	console.do("open the console", chromedp.Navigate(h.URL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)))
	if bg := console.eval(`getComputedStyle(document.querySelector('button[type="submit"]')).backgroundColor`); bg != "rgb(10, 125, 83)" {
		t.Errorf("the sign-in button's background is %q, want the brand colour %s", bg, brandColor)
	}
	console.do("enter the administrator's password",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), adminEmail),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login/totp"]`)))
	at := time.Now()
	if at.Unix()/30 <= enrolledAt.Unix()/30 {
		at = at.Add(30 * time.Second)
	}
	console.do("enter a code",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="one-time-code"]`), mfa.GenerateCode(en.Secret, at)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("users"))) // back at the console it asked for
	console.screenshot("admin")
	console.do("find the user",
		chromedp.SendKeys(chromedp.ID("find-email"), strings.ToUpper(email)),
		chromedp.Click(chromedp.CSS(`form[role="search"] button`)),
		chromedp.WaitVisible(chromedp.ID("user-email")))
	if got := console.text("#user-email"); got != email {
		t.Fatalf("the search opened %q, want %s", got, email)
	}
	for _, sid := range []string{sid1, sid2} {
		if n := console.eval(`String(document.querySelectorAll('#session-` + sid + ` tr[data-client]').length)`); n != "2" {
			t.Errorf("the console lists %s apps for session %s, want 2 (App A and App B)", n, sid)
		}
	}
	console.screenshot("admin-user")

	console.do("revoke all sessions", chromedp.Click(chromedp.ID("revoke-all")), chromedp.WaitVisible(chromedp.ID("console-notice")))
	if notice := console.text("#console-notice"); !strings.Contains(notice, "ended 2 sessions; 4 apps to be told") {
		t.Errorf("after the revoke the console says %q", notice)
	}

	for _, c := range []struct {
		b    *tab
		name string
	}{{laptop, "the laptop"}, {phone, "the phone"}} {
		c.b.waitSignedOut(appA, c.name)
		c.b.waitSignedOut(appB, c.name)
	}

	// Every app confirmed: the console shows the four notifications
	// delivered (reloading, as a person would).
	deadline := time.Now().Add(signOutWait)
	for {
		console.do("reload the user's page", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-email")))
		delivered := console.eval(`String(document.querySelectorAll('tr[data-state="delivered"]').length)`)
		if delivered == "4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console shows %s of 4 notifications delivered %s after the revoke", delivered, signOutWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := console.eval(`String(document.querySelectorAll('.session.ended').length)`); n != "2" {
		t.Errorf("the console shows %s ended sessions, want 2", n)
	}
	console.screenshot("admin-user-revoked")

	// The person leaves: the administrator deletes the account, typing its
	// email, and creates one for their successor.
	console.do("delete the account",
		chromedp.SendKeys(chromedp.ID("confirm-email"), email),
		chromedp.Click(chromedp.ID("delete")),
		// The user's page has a notice too: wait for the front page.
		chromedp.WaitVisible(chromedp.CSS(".create-user summary")),
		chromedp.WaitVisible(chromedp.ID("console-notice")))
	if notice := console.text("#console-notice"); !strings.HasPrefix(notice, "Account deleted: ended 0 sessions") {
		t.Errorf("after the delete the console says %q", notice)
	}
	const successor = "grace.successor@example.com"
	console.do("create a user",
		chromedp.Click(chromedp.CSS(".create-user summary")),
		chromedp.WaitVisible(chromedp.ID("new-email")),
		chromedp.SendKeys(chromedp.ID("new-email"), successor),
		chromedp.SendKeys(chromedp.ID("new-name"), "Grace's successor"),
		chromedp.SendKeys(chromedp.ID("new-password"), "a temporary passphrase"),
		chromedp.Click(chromedp.CSS("#create-user button")),
		chromedp.WaitVisible(chromedp.ID("user-email")))
	if got, notice := console.text("#user-email"), console.text("#console-notice"); got != successor || !strings.HasPrefix(notice, "Account created with a temporary password.") {
		t.Errorf("after creating, the console shows %q with %q", got, notice)
	}
	console.screenshot("admin-user-created")
	t.Logf("browser scenario took %s", time.Since(began).Round(time.Millisecond))
}

// TestBrowser_SignOutEverywhere: a person signed in to App A and App B on
// two devices clicks "Sign out everywhere" on their account page on one;
// both apps sign them out on both devices. On the way it looks at the
// sign-out confirmation and error pages.
func TestBrowser_SignOutEverywhere(t *testing.T) {
	began := time.Now()
	d := signedInOnTwoDevices(t)
	h, appA, appB, laptop, phone := d.h, d.appA, d.appB, d.laptop, d.phone

	// A sign-out request without an id_token_hint asks first.
	laptop.do("open the sign-out page", chromedp.Navigate(h.URL+"/oauth2/sessions/logout"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/oauth2/sessions/logout/confirm"]`)))
	laptop.screenshot("logout-confirm")
	// A sign-in page reached without a sign-in in progress explains itself.
	laptop.do("open a stale sign-in", chromedp.Navigate(h.URL+"/login"), chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := laptop.text(".error"); !strings.Contains(msg, "expired") {
		t.Errorf("a stale sign-in page says %q", msg)
	}
	laptop.screenshot("error")

	laptop.do("open the account page", chromedp.Navigate(h.URL+"/account"), chromedp.WaitVisible(chromedp.ID("sessions")))
	if n := laptop.eval(`String(document.querySelectorAll("#sessions > li").length)`); n != "2" {
		t.Errorf("the account page lists %s sessions, want 2", n)
	}
	laptop.screenshot("account")
	laptop.do("sign out everywhere",
		chromedp.Click(chromedp.CSS(`form[action="/account/sign-out-everywhere"] button`)),
		chromedp.WaitVisible(chromedp.ID("confirm-sign-out-everywhere")))
	if got := laptop.text("h1"); got != "Sign out everywhere?" {
		t.Errorf("signing out everywhere asks %q first", got)
	}
	laptop.do("confirm",
		chromedp.Click(chromedp.ID("confirm-sign-out-everywhere")),
		chromedp.WaitVisible(chromedp.ID("sign-in-again")))
	if got := laptop.text("h1"); got != "You are signed out" {
		t.Errorf("after signing out everywhere the page says %q", got)
	}
	laptop.screenshot("signed-out")

	for _, c := range []struct {
		b    *tab
		name string
	}{{laptop, "the laptop"}, {phone, "the phone"}} {
		c.b.waitSignedOut(appA, c.name)
		c.b.waitSignedOut(appB, c.name)
	}
	t.Logf("browser scenario took %s", time.Since(began).Round(time.Millisecond))
}
