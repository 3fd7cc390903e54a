package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/alerts"
	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// TestBrowser_WasntMe: in Chromium, a person signed in on their laptop;
// someone else signs in to App A and App B from another browser. The
// person gets a "New sign-in" mail naming that browser, opens its "This
// wasn't me" link on the laptop, confirms, and is led to the password
// reset; the other browser's session is gone from both apps, told over
// the back channel, while the laptop's own lives on.
func TestBrowser_WasntMe(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	h := servertest.New(t, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
	h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")
	appB := demoapptest.Start(t, h, "app-b", "App B")

	laptop := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	laptop.signInWithPassword(appA.URL, "")
	laptop.do("signed in to App A", chromedp.WaitVisible(chromedp.ID("signed-in")))

	thief := newPrivateTab(t, laptop)
	thief.signInToBoth(appA, appB, "")

	m := smtp.Wait(email, 1, 15*time.Second)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "New sign-in") || !strings.Contains(m.Text, "Browser: Chrome") {
		t.Errorf("mail %q:\n%s", s, m.Text)
	}
	link := m.Link(t)
	laptop.do("open the link from the mail", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("continue")))
	laptop.screenshot("wasnt-me")
	laptop.do("confirm", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.ID("reported")))
	if text := laptop.text("#continue"); !strings.HasPrefix(text, "Continue") {
		t.Errorf("the way on says %q", text)
	}
	laptop.do("go on to the reset", chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.CSS(`input[type="email"][autocomplete="email"]`)))
	if path := laptop.eval(`location.pathname`); path != alerts.ForgotPath {
		t.Errorf("led to %s, want %s", path, alerts.ForgotPath)
	}

	thief.waitSignedOut(appA, "the other browser")
	thief.waitSignedOut(appB, "the other browser")
	laptop.do("App A on the laptop", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("app-name")))
	if laptop.eval(`document.getElementById("signed-in") ? "in" : "out"`) != "in" {
		t.Error("the laptop's own session ended too")
	}
}
