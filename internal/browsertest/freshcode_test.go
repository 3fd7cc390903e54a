package browsertest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/console"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
)

// TestBrowser_ConsoleAsksForFreshCode: an administrator signed in with two
// factors opens a user's page, leaves it for longer than five minutes,
// then types the email and clicks "Delete account". The console does not
// delete: it asks for a current code, and with the code the account goes.
func TestBrowser_ConsoleAsksForFreshCode(t *testing.T) {
	// The provider's clock, which the test moves instead of waiting, starts
	// an hour in the past: fosite refuses an auth_time in the real future.
	clock := clocktest.New(time.Now().Add(-time.Hour).Truncate(30 * time.Second).Add(15 * time.Second))
	h := servertest.New(t, func(c *server.Config) { c.Now = clock.Now })
	grace := h.CreateUser(email, password)
	const adminEmail = "ada@example.com"
	adm, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: adminEmail, Name: "Ada", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	phone := h.EnrollTOTP(adm)

	b := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	b.do("sign in to the console",
		chromedp.Navigate(h.URL+"/admin/users/"+grace.ID),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="current-password"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), adminEmail),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="one-time-code"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="one-time-code"]`), phone.Code()),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("user-email")))
	if got := b.text("#user-email"); got != email {
		t.Fatalf("the console opened %q, want %s", got, email)
	}
	if n := b.eval(`String(document.querySelectorAll('input[name="code"]').length)`); n != "0" {
		t.Fatalf("right after the sign-in the page has %s code fields, want none", n)
	}

	// The administrator steps away with the page open.
	clock.Advance(console.FreshFactor + time.Minute)
	b.do("delete the account without a code",
		chromedp.SendKeys(chromedp.ID("confirm-email"), email),
		chromedp.Click(chromedp.ID("delete")),
		chromedp.WaitVisible(chromedp.ID("console-error")),
		chromedp.WaitVisible(chromedp.ID("code-delete")))
	if msg := b.text("#console-error"); !strings.Contains(msg, "needs a current code from your authenticator app") ||
		!strings.Contains(msg, "Nothing was changed.") {
		t.Errorf("the refusal says %q", msg)
	}
	if attrs := b.eval(`(e => e.getAttribute("autocomplete") + " " + e.getAttribute("inputmode"))(document.getElementById("code-delete"))`); attrs != "one-time-code numeric" {
		t.Errorf("the code field is %q, want autocomplete one-time-code and inputmode numeric", attrs)
	}
	if _, err := h.Srv.Users.ByID(h.Ctx, grace.ID); err != nil {
		t.Fatalf("the account after the refused delete: %v", err)
	}
	b.screenshot("admin-fresh-code")

	b.do("delete the account with a code",
		chromedp.SendKeys(chromedp.ID("confirm-email"), email),
		chromedp.SendKeys(chromedp.ID("code-delete"), phone.Code()),
		chromedp.Click(chromedp.ID("delete")),
		chromedp.WaitVisible(chromedp.CSS(".create-user summary")),
		chromedp.WaitVisible(chromedp.ID("console-notice")))
	if notice := b.text("#console-notice"); !strings.HasPrefix(notice, "Account deleted") {
		t.Errorf("after the delete the console says %q", notice)
	}
	if _, err := h.Srv.Users.ByID(h.Ctx, grace.ID); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("the account after the delete with a code: %v, want it gone", err)
	}
	var n int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM audit_log WHERE actor = $1 AND action = 'users.delete' AND target = $2`,
		audit.Admin(adm.ID), grace.ID).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d audit records of the delete (%v), want 1", n, err)
	}
}
