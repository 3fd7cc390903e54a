package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

// TestBrowser_ChangePassword: a person signed in to App A and App B on two
// devices changes their password on the laptop's account page. The phone
// is signed out of both apps by back-channel logout; the laptop stays
// signed in; the next sign-in takes the new password.
func TestBrowser_ChangePassword(t *testing.T) {
	began := time.Now()
	d := signedInOnTwoDevices(t)
	h, appA, appB, laptop, phone := d.h, d.appA, d.appB, d.laptop, d.phone

	const newPassword = "four new words together"
	laptop.do("open the account page", chromedp.Navigate(h.URL+"/account"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/account/password"]`)))
	laptop.do("try a common password",
		chromedp.SendKeys(chromedp.ID("current-password"), password),
		chromedp.SendKeys(chromedp.ID("new-password"), "Password1"),
		chromedp.SendKeys(chromedp.ID("confirm-password"), "Password1"),
		chromedp.Click(chromedp.CSS(`form[action="/account/password"] button`)),
		chromedp.WaitVisible(chromedp.ID("password-error")))
	if msg := laptop.text("#password-error"); !strings.Contains(msg, "most common passwords") {
		t.Errorf("a common new password gets %q", msg)
	}
	laptop.screenshot("password-refused")
	laptop.do("change the password",
		chromedp.SendKeys(chromedp.ID("current-password"), password),
		chromedp.SendKeys(chromedp.ID("new-password"), newPassword),
		chromedp.SendKeys(chromedp.ID("confirm-password"), newPassword),
		chromedp.Click(chromedp.CSS(`form[action="/account/password"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if msg := laptop.text("p.notice"); !strings.Contains(msg, "Your password is changed") {
		t.Errorf("after the change the page says %q", msg)
	}
	if n := laptop.eval(`String(document.querySelectorAll("#sessions > li").length)`); n != "1" {
		t.Errorf("the account page lists %s sessions after the change, want this one", n)
	}
	laptop.screenshot("password-changed")

	phone.waitSignedOut(appA, "the phone")
	phone.waitSignedOut(appB, "the phone")
	laptop.do("App A on the laptop", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("app-name")))
	if laptop.eval(`document.getElementById("signed-in") ? "in" : "out"`) != "in" {
		t.Error("the laptop, which changed the password, was signed out of App A")
	}

	// The phone signs in again: the old password is refused, the new one works.
	phone.do("sign in on the phone", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".error")))
	phone.do("with the new password",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), newPassword),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")))
	t.Logf("browser scenario took %s", time.Since(began).Round(time.Millisecond))
}

// TestBrowser_TemporaryPassword: a person whose password an administrator
// reset signs in to App A with the temporary one, is asked for their own,
// and arrives at App A signed in.
func TestBrowser_TemporaryPassword(t *testing.T) {
	h := servertest.New(t)
	u := h.CreateUser(email, password)
	const temporary, mine = "from the help desk", "only mine from now on"
	if err := h.Srv.Users.SetPassword(h.Ctx, u.ID, temporary, true); err != nil {
		t.Fatal(err)
	}
	appA := demoapptest.Start(t, h, "app-a", "App A")
	b := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	b.do("open the app", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	b.do("sign in with the temporary password", chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), temporary),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login/new-password"]`)))
	b.screenshot("new-password")
	b.do("choose their own",
		chromedp.SendKeys(chromedp.ID("new-password"), mine),
		chromedp.SendKeys(chromedp.ID("confirm-password"), mine),
		chromedp.Click(chromedp.CSS(`form[action="/login/new-password"] button`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")))
	if same, err := h.Srv.Users.SameAsCurrent(h.Ctx, u.ID, mine); err != nil || !same {
		t.Errorf("the new password is not the account's (%v)", err)
	}
}
