package server_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// forgetFailures clears the per-user throttle between cases, so each case
// sees only its own failures (the throttle has its own tests).
func forgetFailures(t *testing.T, h *servertest.Harness) {
	if _, err := h.DB.Pool.Exec(h.Ctx, `DELETE FROM throttle`); err != nil {
		t.Fatal(err)
	}
}

var (
	secretRe   = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
	continueRe = regexp.MustCompile(`href="([^"]+)" id="continue"`)
	recoveryRe = regexp.MustCompile(`<li>([0-9a-z]{5}-[0-9a-z]{5})</li>`)
)

// enroll completes the forced-enrollment page and returns the TOTP secret,
// the recovery codes and the page the browser ends on.
func enroll(t *testing.T, h *servertest.Harness, br *servertest.Browser, p servertest.Page, now time.Time) (string, []string, servertest.Page) {
	t.Helper()
	if p.URL.Path != "/login/enroll" {
		t.Fatalf("expected the enrollment page, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	for _, want := range []string{`src="/login/enroll/qr.png"`, `href="otpauth://totp/`, `autocomplete="one-time-code"`, `inputmode="numeric"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("enrollment page lacks %s", want)
		}
	}
	qr := br.Get(h.Issuer + "/login/enroll/qr.png")
	if qr.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(qr.Body, "\x89PNG") {
		t.Errorf("QR code is not a PNG: %s", qr.Header.Get("Content-Type"))
	}
	m := secretRe.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no secret on the enrollment page:\n%s", p.Body)
	}
	secret := m[1]
	p = br.Post(h.Issuer+"/login/enroll", url.Values{"csrf_token": {p.CSRF(t)}, "code": {mfa.GenerateCode(secret, now)}})
	var codes []string
	for _, c := range recoveryRe.FindAllStringSubmatch(p.Body, -1) {
		codes = append(codes, c[1])
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown, want 10:\n%s", len(codes), p.Body)
	}
	next := continueRe.FindStringSubmatch(p.Body)
	if next == nil {
		t.Fatal("no continue link on the recovery codes page")
	}
	return secret, codes, br.Get(h.Issuer + html.UnescapeString(next[1]))
}

// passwordThenCode signs in with the password and lands on the code form.
func passwordThenCode(t *testing.T, br *servertest.Browser, start, email string) servertest.Page {
	t.Helper()
	p := br.SignIn(start, email, password)
	if p.URL.Path != "/login/totp" {
		t.Fatalf("after the password: %s, want the code form:\n%s", p.URL, p.Body)
	}
	return p
}

func TestMFA_SignIn(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.RequireMFA = true })
	user := h.CreateUser("alice@example.com", password)
	app, _, _, _ := twoApps(h)

	// First sign-in: the password, then forced enrollment before any app.
	alice := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := alice.SignIn(a.URL, "alice@example.com", password)
	if again := alice.Get(a.URL); again.URL.Path == "/callback" {
		t.Fatal("a sign-in with only the password obtained a code")
	}
	p = alice.Get(h.Issuer + "/login/enroll") // the password step was reset by the new flow; redo it
	if p.URL.Path != "/login" {
		t.Fatalf("a half-finished sign-in was carried into a new one: %s", p.URL)
	}
	p = alice.SignIn(a.URL, "alice@example.com", password)
	secret, codes, p := enroll(t, h, alice, p, time.Now())
	_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
	assertTwoFactor(t, claims, "otp")
	if n := h.OwnChanges(claims["sub"].(string), audit.ActionEnableMFA); n != 1 {
		t.Errorf("the enrollment is in the audit log %d times, want once", n)
	}

	t.Run("two factors afterwards", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		p := passwordThenCode(t, br, a.URL, "alice@example.com")
		// The enrollment spent the current step; the next one is within the skew.
		p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {mfa.GenerateCode(secret, time.Now().Add(30*time.Second))}})
		_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
		assertTwoFactor(t, claims, "otp")
	})

	t.Run("a code is accepted once", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		p := passwordThenCode(t, br, app.AuthURL().URL, "alice@example.com")
		p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {mfa.GenerateCode(secret, time.Now())}})
		if p.Status != http.StatusUnauthorized || !strings.Contains(p.Body, "already used") {
			t.Fatalf("replayed code: %d\n%s", p.Status, p.Body)
		}
	})

	t.Run("a recovery code works once in place of a code", func(t *testing.T) {
		for i, want := range []int{http.StatusOK, http.StatusUnauthorized} {
			br := servertest.NewBrowser(t)
			a := app.AuthURL()
			p := passwordThenCode(t, br, a.URL, "alice@example.com")
			p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {codes[0]}})
			if i == 0 {
				_, _, claims := app.Exchange(t, app.Code(t, p, a), a)
				assertTwoFactor(t, claims, "")
			} else if p.Status != want {
				t.Fatalf("second use of a recovery code: status %d", p.Status)
			}
		}
		forgetFailures(t, h)
	})

	t.Run("bad input gets a clear message and changes nothing", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		p := passwordThenCode(t, br, app.AuthURL().URL, "alice@example.com")
		csrf := p.CSRF(t)
		for _, code := range []string{"abcdef", "12345", "1234567", ""} {
			p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {csrf}, "code": {code}})
			if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "6-digit code") {
				t.Errorf("code %q: status %d, want 400 with a hint", code, p.Status)
			}
		}
		var failures int
		h.DB.Pool.QueryRow(h.Ctx, `SELECT mfa_failures FROM login_flows`).Scan(&failures)
		if failures != 0 {
			t.Errorf("malformed codes counted as %d failures", failures)
		}
		// An expired step (a minute old) and a wrong recovery code are wrong, not malformed.
		for _, code := range []string{mfa.GenerateCode(secret, time.Now().Add(-90*time.Second)), "zzzzz-zzzzz"} {
			p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {csrf}, "code": {code}})
			if p.Status != http.StatusUnauthorized {
				t.Errorf("code %q: status %d, want 401", code, p.Status)
			}
		}
		forgetFailures(t, h)
	})

	t.Run("five wrong codes end the attempt", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		p := passwordThenCode(t, br, a.URL, "alice@example.com")
		csrf := p.CSRF(t)
		for i := range 5 {
			forgetFailures(t, h) // no per-user delay: this case is about the per-attempt limit
			p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {csrf}, "code": {"000000"}})
			if i < 4 && p.Status != http.StatusUnauthorized {
				t.Fatalf("wrong code %d: status %d", i+1, p.Status)
			}
		}
		if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "sign in again") {
			t.Fatalf("after 5 wrong codes: %d\n%s", p.Status, p.Body)
		}
		p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {csrf}, "code": {mfa.GenerateCode(secret, time.Now().Add(30*time.Second))}})
		if p.URL.Path == "/callback" || p.Status != http.StatusBadRequest {
			t.Fatalf("the dead attempt still accepted a code: %d at %s", p.Status, p.URL)
		}
	})

	_ = user
}

func assertTwoFactor(t *testing.T, claims map[string]any, method string) {
	t.Helper()
	var amr []string
	for _, v := range claims["amr"].([]any) {
		amr = append(amr, v.(string))
	}
	if !slices.Contains(amr, "pwd") || !slices.Contains(amr, "mfa") || (method != "" && !slices.Contains(amr, method)) {
		t.Errorf("amr = %v, want pwd, mfa %s", amr, method)
	}
	if claims["acr"] != sessions.ACRMFA {
		t.Errorf("acr = %v, want %s", claims["acr"], sessions.ACRMFA)
	}
}

// TestMFA_StepUp: an app that asks for two factors through acr_values gets
// them, even from a password-only session, without a new sid.
func TestMFA_StepUp(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	appA, appB, recvA, recvB := twoApps(h)
	alice := servertest.NewBrowser(t)
	inA := signInTo(t, alice, appA, recvA, "alice@example.com")
	other := signInTo(t, servertest.NewBrowser(t), appA, recvA, "alice@example.com")

	b := appB.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRMFA))
	p := alice.Get(b.URL)
	_, _, p = enroll(t, h, alice, p, time.Now())
	_, _, claims := appB.Exchange(t, appB.Code(t, p, b), b)
	assertTwoFactor(t, claims, "otp")
	if claims["sid"] != inA.sid {
		t.Errorf("step-up changed the sid: %v, want %s", claims["sid"], inA.sid)
	}
	// Enrolling a factor ends the user's other sessions.
	if got := recvA.WaitFor(t, 1); got[0].SID != other.sid {
		t.Errorf("logout token for %s, want the other session %s", got[0].SID, other.sid)
	}
	other.assertDead(t)
	_ = recvB
}
