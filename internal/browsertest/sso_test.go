package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

const (
	chromiumPath = "/usr/bin/chromium"
	email        = "grace@example.com"
	password     = "correct horse battery staple"
	stepTimeout  = 15 * time.Second
)

// newBrowser starts a headless Chromium with a fresh profile and returns the
// context of its first tab. The browser stops when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	ctx, _ := newBrowserIn(t, t.TempDir())
	return ctx
}

// newBrowserIn starts a headless Chromium on the profile in dir, which may
// hold what an earlier browser left there. It returns the context of its
// first tab and quit, which closes the browser as a person quitting it
// would (Chromium writes its cookies to the profile); the browser is
// stopped when the test ends at the latest.
func newBrowserIn(t *testing.T, dir string) (ctx context.Context, quit func()) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no browser at %s (%v): install the Debian package chromium (apt-get install chromium); "+
			"the browser tests never download one", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(dir),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers and CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1000, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Cleanups run last-in first-out: the browser exits before t.TempDir
	// removes its profile.
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry a timeout, which
	// would stop the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx, func() {
		t.Helper()
		qctx, cancelQuit := context.WithTimeout(ctx, stepTimeout)
		defer cancelQuit()
		if err := chromedp.Cancel(qctx); err != nil {
			t.Fatalf("quit the browser: %v", err)
		}
	}
}

// tab is one browser tab (in its own browser context, with its own cookies,
// when made by newPrivateTab) driven by a test.
type tab struct {
	t     *testing.T
	ctx   context.Context
	shots string // directory for screenshots, "" for none
}

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\n%s", what, err, b.describe())
	}
}

// describe says where the tab is and what it shows, for failure messages.
func (b *tab) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return "the tab is at " + loc + " showing:\n" + text
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("read %s: %v\n%s", sel, err, b.describe())
	}
	return strings.TrimSpace(s)
}

func (b *tab) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// screenshot saves the page as name.png (desktop, the window's width) and
// name-phone.png (a 375 px wide phone at twice the pixel density) when
// IDP_SCREENSHOTS is set.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	// Each viewport is set explicitly: the browser's own window size is
	// not restored by resetting the emulation.
	desktopView := chromedp.EmulateViewport(1000, 800)
	settle := chromedp.Sleep(150 * time.Millisecond) // let the layout follow the viewport
	var desktop, phone []byte
	err := chromedp.Do(ctx, desktopView, settle)
	if err == nil {
		desktop, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	}
	if err == nil {
		err = chromedp.Do(ctx, chromedp.EmulateViewport(375, 740, chromedp.EmulateScale(2), chromedp.EmulateMobile), settle)
	}
	if err == nil {
		phone, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	}
	if err == nil {
		err = chromedp.Do(ctx, desktopView)
	}
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	for suffix, png := range map[string][]byte{"": desktop, "-phone": phone} {
		if err := os.WriteFile(filepath.Join(b.shots, name+suffix+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("IDP_SCREENSHOTS")
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newPrivateTab opens a tab in a new browser context: a second person, or
// the same person on another device, with no cookies.
func newPrivateTab(t *testing.T, parent *tab) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a new browser context: %v", err)
	}
	return &tab{t: t, ctx: ctx, shots: parent.shots}
}

// signInWithPassword goes from the app's signed-out page to the provider's
// password form and submits it.
func (b *tab) signInWithPassword(appURL string, shot string) {
	b.t.Helper()
	b.do("open the app", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	b.do("click Sign in", chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)))
	if shot != "" {
		b.screenshot(shot)
	}
	b.do("enter the password",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
}

// TestBrowser_SingleSignOnAndOut is the product's main story in a real
// browser, with 2FA required: the first sign-in at App A enrolls TOTP and
// shows recovery codes; App B then signs in without any form under the same
// provider session; signing out at App A signs the person out of App B
// through back-channel logout; a later sign-in (a new browser context) asks
// for the password and a TOTP code.
func TestBrowser_SingleSignOnAndOut(t *testing.T) {
	began := time.Now()
	h := servertest.New(t, func(c *server.Config) { c.RequireMFA = true })
	h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")
	appB := demoapptest.Start(t, h, "app-b", "App B")
	b := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}

	// App A: password, then forced enrollment.
	b.signInWithPassword(appA.URL, "login")
	b.do("reach the enrollment page", chromedp.WaitVisible(chromedp.ID("totp-secret")))
	b.screenshot("enroll")
	secret := b.text("#totp-secret")
	enrolledAt := time.Now()
	b.do("enter the first code",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="one-time-code"]`), mfa.GenerateCode(secret, enrolledAt)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("recovery-codes")))
	if n := b.eval(`String(document.querySelectorAll("#recovery-codes li").length)`); n != "10" {
		t.Errorf("%s recovery codes shown, want 10", n)
	}
	b.screenshot("recovery-codes")
	b.do("continue to App A", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	b.screenshot("app-home")
	if loc := b.eval(`location.origin`); loc != appA.URL {
		t.Errorf("after enrollment the browser is at %s, want App A at %s", loc, appA.URL)
	}
	if got := b.text("#email"); got != email {
		t.Errorf("App A shows %q signed in, want %s", got, email)
	}
	sid := b.text("#sid")
	if sid == "" || appA.Sessions(sid) != 1 {
		t.Fatalf("App A shows sid %q and holds %d sessions for it, want one", sid, appA.Sessions(sid))
	}
	if amr := b.text("#amr"); !strings.Contains(amr, "otp") {
		t.Errorf("App A shows amr %q, want otp among the methods", amr)
	}
	// The stylesheet loads under the app's Content-Security-Policy.
	if bg := b.eval(`getComputedStyle(document.querySelector("header")).backgroundColor`); bg != "rgb(29, 35, 48)" {
		t.Errorf("App A's header background is %q: its stylesheet did not apply", bg)
	}

	// App B: single sign-on, no form.
	b.do("open App B", chromedp.Navigate(appB.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	b.do("sign in to App B", chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	if got := b.text("#sid"); got != sid {
		t.Fatalf("App B is in provider session %q, App A in %q: want one SSO session", got, sid)
	}

	// Sign out at App A: A at once, B through the back channel.
	b.do("open App A", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-in")))
	b.do("sign out at App A", chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("signed-out")))
	if notice := b.text("#notice"); !strings.Contains(notice, "signed out of App A and of the identity provider") {
		t.Errorf("App A after sign-out says %q", notice)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.do("reload App B", chromedp.Navigate(appB.URL+"/"), chromedp.WaitVisible(chromedp.ID("app-name")))
		if b.eval(`document.getElementById("signed-out") ? "out" : "in"`) == "out" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("App B still shows the person signed in 10 s after the sign-out at App A")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if notice := b.text("#notice"); !strings.Contains(notice, "back-channel logout") {
		t.Errorf("App B after the back-channel logout says %q", notice)
	}

	// Later, in a fresh browser context: password, then a TOTP code.
	b2 := newPrivateTab(t, b)
	b2.signInWithPassword(appA.URL, "")
	b2.do("reach the code form", chromedp.WaitVisible(chromedp.CSS(`form[action="/login/totp"]`)))
	b2.screenshot("totp")
	// A code is good once: take the next time step if the enrollment's is
	// still current (the provider accepts one step of clock skew).
	at := time.Now()
	if at.Unix()/30 <= enrolledAt.Unix()/30 {
		at = at.Add(30 * time.Second)
	}
	b2.do("enter a code",
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="one-time-code"]`), mfa.GenerateCode(secret, at)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")))
	sid2 := b2.text("#sid")
	if sid2 == "" || sid2 == sid {
		t.Errorf("the new sign-in shows sid %q, want a new session (the old one was %q)", sid2, sid)
	}
	if got := b2.text("#email"); got != email {
		t.Errorf("App A shows %q signed in, want %s", got, email)
	}
	t.Logf("browser scenario took %s", time.Since(began).Round(time.Millisecond))
}
