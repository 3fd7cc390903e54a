package browsertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

// sessionCookie is the provider's session cookie as Chromium holds it (nil
// when it holds none).
func (b *tab) sessionCookie(h *servertest.Harness) *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{h.URL + "/"}})
	if err != nil {
		b.t.Fatalf("read the cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == h.Srv.Sessions.CookieName() {
			return c
		}
	}
	return nil
}

// TestBrowser_KeepMeSignedIn: without "Keep me signed in on this device"
// the provider's cookie is a browser-session cookie (Chromium reports no
// expiry) and the person is signed out once the browser is closed; with
// it, the cookie expires with the session's absolute lifetime and a
// restarted browser is still signed in. The account page says which.
func TestBrowser_KeepMeSignedIn(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")

	for _, tc := range []struct {
		name    string
		tick    bool
		account string // what the account page says about the session
	}{
		{"unticked", false, "Until the browser is closed"},
		{"ticked", true, "Remembered on this device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			profile := t.TempDir()
			ctx, quit := newBrowserIn(t, profile)
			b := &tab{t: t, ctx: ctx}
			b.do("open the app", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
			b.do("click Sign in", chromedp.Click(chromedp.ID("sign-in")),
				chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)))
			if b.eval(`String(document.getElementById("remember").checked)`) != "false" {
				t.Fatal(`"Keep me signed in" is ticked before the person ticks it`)
			}
			steps := []chromedp.Action[chromedp.Void]{
				chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), email),
				chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
			}
			if tc.tick {
				steps = append(steps, chromedp.Click(chromedp.CSS(`label[for="remember"]`)))
			}
			steps = append(steps, chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.ID("signed-in")))
			b.do("sign in", steps...)
			sid := b.text("#sid")
			s, err := h.Srv.Sessions.Get(h.Ctx, sid)
			if err != nil {
				t.Fatal(err)
			}

			c := b.sessionCookie(h)
			switch {
			case c == nil:
				t.Fatal("Chromium holds no session cookie of the provider")
			case !tc.tick && (!c.Session || c.Expires != -1):
				t.Errorf("unticked: Chromium's cookie has session %v, expires %v; want a browser-session cookie (-1)", c.Session, c.Expires)
			case tc.tick && (c.Session || int64(c.Expires) != s.AbsoluteExpiresAt.Unix()):
				t.Errorf("ticked: Chromium's cookie has session %v, expires %v (%s); want it to expire with the session at %s",
					c.Session, c.Expires, time.Unix(int64(c.Expires), 0).UTC(), s.AbsoluteExpiresAt.UTC())
			}
			b.do("open the account page", chromedp.Navigate(h.URL+"/account"), chromedp.WaitVisible(chromedp.ID("remembered-"+sid)))
			if got := b.text("#remembered-" + sid); !strings.HasPrefix(got, tc.account) {
				t.Errorf("the account page says %q about this session, want %q", got, tc.account)
			}

			// Quit and start the browser again on the same profile.
			quit()
			ctx, _ = newBrowserIn(t, profile)
			b = &tab{t: t, ctx: ctx}
			b.do("open the account page again", chromedp.Navigate(h.URL+"/account"),
				chromedp.WaitVisible(chromedp.CSS(`#account-email, input[autocomplete="current-password"]`)))
			signedIn := b.eval(`document.getElementById("account-email") ? "in" : "out"`) == "in"
			if signedIn != tc.tick {
				t.Errorf("after the browser restarted the person is signed in: %v, want %v", signedIn, tc.tick)
			}
		})
	}
}
