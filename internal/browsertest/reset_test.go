package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// TestBrowser_ForgotPassword: in Chromium, a person with TOTP who forgot
// their password asks for a link from App A's sign-in, follows the link
// from the mail a real SMTP server received, gives a code, chooses a new
// password and lands signed in at App A; the session they had in another
// browser is gone and App B, which held it, was told.
func TestBrowser_ForgotPassword(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	h := servertest.New(t, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
	u := h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")
	appB := demoapptest.Start(t, h, "app-b", "App B")

	// The old session, in another browser, from before 2FA was set up.
	old := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	old.signInWithPassword(appB.URL, "")
	old.do("signed in to App B", chromedp.WaitVisible(chromedp.ID("signed-in")))
	phone := h.EnrollTOTP(u)

	b := newPrivateTab(t, old)
	b.do("open App A", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	b.do("click Sign in", chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("forgot-password")))
	if text := b.text("#forgot-password"); !strings.HasPrefix(text, "Forgot") {
		t.Errorf("the reset link says %q", text)
	}
	b.do("click Forgot your password?", chromedp.Click(chromedp.ID("forgot-password")),
		chromedp.WaitVisible(chromedp.CSS(`input[type="email"][autocomplete="email"]`)))
	b.screenshot("forgot")
	b.do("ask for a link",
		chromedp.SendKeys(chromedp.CSS(`input[type="email"]`), email),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("forgot-sent")))
	link := smtp.Wait(email, 1, 15*time.Second).Link(t)

	b.do("open the link from the mail", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("continue")))
	b.do("continue", chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="one-time-code"]`)))
	b.do("enter a code",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="one-time-code"]`), phone.Code()),
		chromedp.Click(chromedp.CSS(`form[action="/login/totp"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="new-password"]`)))
	b.screenshot("reset-new-password")
	const mine = "chosen after the mail"
	b.do("choose a new password",
		chromedp.SendKeys(chromedp.ID("new-password"), mine),
		chromedp.SendKeys(chromedp.ID("confirm-password"), mine),
		chromedp.Click(chromedp.CSS(`form[action="/login/new-password"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")))
	if loc := b.eval(`location.origin`); loc != appA.URL {
		t.Errorf("after the reset the browser is at %s, want App A at %s", loc, appA.URL)
	}
	if amr := b.text("#amr"); !strings.Contains(amr, "otp") {
		t.Errorf("App A shows amr %q, want otp", amr)
	}

	// The other browser's session ended, and App B was told.
	deadline := time.Now().Add(10 * time.Second)
	for {
		old.do("reload App B", chromedp.Navigate(appB.URL+"/"), chromedp.WaitVisible(chromedp.ID("app-name")))
		if old.eval(`document.getElementById("signed-out") ? "out" : "in"`) == "out" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("App B still shows the old session 10 s after the reset")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if notice := old.text("#notice"); !strings.Contains(notice, "back-channel logout") {
		t.Errorf("App B says %q", notice)
	}
	if _, err := h.Srv.Users.Authenticate(h.Ctx, email, mine, ""); err != nil {
		t.Errorf("the new password does not sign in: %v", err)
	}
}
