package server_test

import (
	"fmt"
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
	"github.com/idp/idp/internal/dbtest"
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
		failures := dbtest.Value[int](t, h.DB.Pool, `SELECT mfa_failures FROM login_flows`)
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
	// Without a second factor yet, the password comes first.
	servertest.WantPage(t, p, "/login", http.StatusOK, "Confirm it’s you")
	p = alice.Post(h.Issuer+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "password": {password}})
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

// TestMFA_StepUpTakeover: whoever holds a stolen password-only session
// cookie cannot step it up by enrolling their own authenticator (and so
// get a two-factor session, the recovery codes, and the end of the
// owner's other sessions). The step-up asks for the password first, and a
// pending secret is shown to the sign-in that began it only.
func TestMFA_StepUpTakeover(t *testing.T) {
	h := servertest.New(t)
	owner := h.CreateUser("alice@example.com", password)
	// An administrator, so that /admin asks for the step-up too.
	if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE users SET is_admin = true WHERE id = $1`, owner.ID); err != nil {
		t.Fatal(err)
	}
	appA, appB, recvA, _ := twoApps(h)
	alice := servertest.NewBrowser(t)
	signInTo(t, alice, appA, recvA, "alice@example.com")

	// The attacker copies alice's session cookie into a browser of their own.
	thief := servertest.NewBrowser(t)
	issuer, _ := url.Parse(h.Issuer)
	thief.Client.Jar.SetCookies(issuer, alice.Client.Jar.Cookies(issuer))

	for _, start := range []string{
		appB.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRMFA)).URL,
		h.Issuer + "/admin",
	} {
		p := thief.Get(start)
		if p.URL.Path == "/login/enroll" || strings.Contains(p.Body, "totp-secret") {
			t.Fatalf("%s: a stolen password-only cookie reached the enrollment page", start)
		}
		servertest.WantPage(t, p, "/login", http.StatusOK, "Confirm it’s you")
		if !strings.Contains(p.Body, `value="alice@example.com" readonly`) {
			t.Errorf("%s: the step-up's email is not fixed to the session's owner:\n%s", start, p.Body)
		}
		// Skipping the password step lands back on it.
		if q := thief.Get(h.Issuer + "/login/enroll"); q.URL.Path != "/login" || strings.Contains(q.Body, "totp-secret") {
			t.Fatalf("%s: /login/enroll before the password: %s\n%s", start, q.URL, q.Body)
		}
		if q := thief.Get(h.Issuer + "/login/enroll/qr.png"); strings.HasPrefix(q.Body, "\x89PNG") {
			t.Fatalf("%s: the QR code of a secret was served before the password", start)
		}
		// Another account's password does not unlock alice's step-up.
		h.CreateUser(fmt.Sprintf("mallory%d@example.com", len(start)), "mallory's own password")
		p = thief.Post(h.Issuer+"/login", url.Values{"csrf_token": {p.CSRF(t)},
			"email": {fmt.Sprintf("mallory%d@example.com", len(start))}, "password": {"mallory's own password"}})
		if p.Status != http.StatusUnauthorized || p.URL.Path != "/login" {
			t.Fatalf("%s: another account's password answered %d at %s, want 401 on the password page", start, p.Status, p.URL)
		}
	}
	var pending int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM totp_credentials`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 0 {
		t.Errorf("%d TOTP secrets were made for the thief's attempts, want none", pending)
	}
	if list, err := h.Srv.Sessions.ListByUser(h.Ctx, owner.ID); err != nil || len(list) != 1 {
		t.Errorf("alice has %d live sessions (%v), want her one session untouched", len(list), err)
	}
}
