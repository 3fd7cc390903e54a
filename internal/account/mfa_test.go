package account_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

var (
	secretRe   = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
	recoveryRe = regexp.MustCompile(`<li>([0-9a-z]{5}-[0-9a-z]{5})</li>`)
)

func recoveryCodes(t *testing.T, p servertest.Page) []string {
	t.Helper()
	var codes []string
	for _, m := range recoveryRe.FindAllStringSubmatch(p.Body, -1) {
		codes = append(codes, m[1])
	}
	if len(codes) != mfa.RecoveryCodeCount {
		t.Fatalf("%d recovery codes on the page, want %d:\n%s", len(codes), mfa.RecoveryCodeCount, p.Body)
	}
	return codes
}

func TestAccount_EnrollMFA(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	app := e.NewRP("app")
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	e.signIn(t, laptop, alice.Email, "")
	phoneApp := e.signInTo(t, phone, app, alice.Email)
	laptopSession := e.mustSession(t, laptop)

	p := laptop.Get(e.URL + "/account/mfa/enroll")
	servertest.WantPage(t, p, "/account/mfa/enroll", http.StatusOK, `src="/account/mfa/qr.png"`)
	m := secretRe.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no secret on the enrollment page:\n%s", p.Body)
	}
	secret := m[1]
	if !strings.Contains(p.Body, `href="otpauth://totp/`) || !strings.Contains(p.Body, "secret="+secret) {
		t.Fatalf("no otpauth:// link with the secret:\n%s", p.Body)
	}
	csrf := p.CSRF(t)

	t.Run("QR code and reload show the same pending secret", func(t *testing.T) {
		qr := laptop.Get(e.URL + "/account/mfa/qr.png")
		if qr.Status != http.StatusOK || qr.Header.Get("Content-Type") != "image/png" ||
			!bytes.HasPrefix([]byte(qr.Body), []byte("\x89PNG")) || qr.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("QR: status %d, type %q, cache %q", qr.Status, qr.Header.Get("Content-Type"), qr.Header.Get("Cache-Control"))
		}
		if again := laptop.Get(e.URL + "/account/mfa/enroll"); !strings.Contains(again.Body, secret) {
			t.Fatal("a reload shows another secret")
		}
	})

	enroll := e.URL + "/account/mfa/enroll"
	t.Run("bad input turns nothing on", func(t *testing.T) {
		// The right code with a wrong password must not spend the code:
		// the same code works below.
		right := mfa.GenerateCode(secret, e.clock.Now())
		cases := []struct {
			name   string
			form   url.Values
			status int
			want   string
		}{
			{"no CSRF token", url.Values{"code": {right}, "password": {password}}, http.StatusForbidden, "could not be verified"},
			{"wrong password", url.Values{"csrf_token": {csrf}, "code": {right}, "password": {"wrong password"}}, http.StatusUnauthorized, "password is not right"},
			{"no password", url.Values{"csrf_token": {csrf}, "code": {right}}, http.StatusBadRequest, "Enter your password"},
			{"malformed code", url.Values{"csrf_token": {csrf}, "code": {"12ab"}, "password": {password}}, http.StatusBadRequest, "Enter the 6 digits"},
			{"recovery code", url.Values{"csrf_token": {csrf}, "code": {"abcde-fghjk"}, "password": {password}}, http.StatusBadRequest, "Enter the 6 digits"},
			{"wrong code", url.Values{"csrf_token": {csrf}, "code": {e.wrongCode(secret)}, "password": {password}}, http.StatusUnauthorized, "code is not right"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p := laptop.Post(enroll, tc.form)
				if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
					t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
				}
				if e.enabled(t, alice.ID) {
					t.Fatal("2FA turned on by a bad request")
				}
				if !e.live(t, phoneApp.sid) {
					t.Fatal("the phone's session ended by a bad request")
				}
				if tc.status != http.StatusForbidden && !strings.Contains(p.Body, secret) {
					t.Fatal("the error page lost the pending secret")
				}
			})
		}
	})

	t.Run("the right code turns it on", func(t *testing.T) {
		before := e.cookie(laptop)
		p := laptop.Post(enroll, url.Values{"csrf_token": {csrf}, "code": {mfa.GenerateCode(secret, e.clock.Now())},
			"password": {password}})
		servertest.WantPage(t, p, "/account/mfa/enroll", http.StatusOK, `href="/account"`)
		codes := recoveryCodes(t, p)
		if !e.enabled(t, alice.ID) {
			t.Fatal("2FA is not on")
		}
		if method, err := e.Srv.TOTP.Verify(e.Ctx, alice.ID, codes[0]); err != nil || method != mfa.MethodRecovery {
			t.Errorf("a shown recovery code does not verify: %v", err)
		}
		if after := e.cookie(laptop); after == before || after == "" {
			t.Error("the session cookie value was not rotated")
		}
		s := e.mustSession(t, laptop)
		if s.ID != laptopSession.ID || s.ACR != sessions.ACRMFA || !slices.Contains(s.AMR, sessions.AMROTP) {
			t.Errorf("session after enrolling: sid %s acr %s amr %v, want the same sid, two factors", s.ID, s.ACR, s.AMR)
		}
		if got := e.revokedReason(t, phoneApp.sid); got != sessions.ReasonFactorsChanged {
			t.Errorf("phone session: revoked reason %q, want %q", got, sessions.ReasonFactorsChanged)
		}
		if phoneApp.active(t) {
			t.Error("the phone's token still works")
		}
		// The old cookie value is worthless: replaying it finds no session.
		stale := servertest.NewBrowser(t)
		u, _ := url.Parse(e.URL)
		stale.Client.Jar.SetCookies(u, []*http.Cookie{{Name: e.Srv.Sessions.CookieName(), Value: before}})
		if _, err := e.session(t, stale); !errors.Is(err, sessions.ErrNoSession) {
			t.Errorf("the pre-enrollment cookie still opens a session: %v", err)
		}
		servertest.WantPage(t, laptop.Get(e.URL+"/account"), "/account", http.StatusOK, "9 of 10 recovery codes left")
		if n := e.OwnChanges(alice.ID, audit.ActionEnableMFA); n != 1 {
			t.Errorf("enrolling is in the audit log %d times, want once", n)
		}
	})

	t.Run("afterwards the secret is never shown again", func(t *testing.T) {
		p := laptop.Get(e.URL + "/account/mfa/enroll")
		servertest.WantPage(t, p, "/account", http.StatusOK, "already on")
		if strings.Contains(p.Body, secret) {
			t.Fatal("the active secret is shown")
		}
		if qr := laptop.Get(e.URL + "/account/mfa/qr.png"); qr.Status != http.StatusNotFound {
			t.Fatalf("QR of an active secret: %d, want 404", qr.Status)
		}
	})
}

func TestAccount_RegenerateRecoveryCodes(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	secret, old := e.enroll(t, alice)
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	e.signIn(t, laptop, alice.Email, secret)
	e.signIn(t, phone, alice.Email, secret)
	phoneSID := e.mustSession(t, phone).ID
	csrf := laptop.Get(e.URL + "/account").CSRF(t)
	regenerate := e.URL + "/account/mfa/recovery-codes"

	hashes := func() string {
		var s string
		if err := e.DB.Pool.QueryRow(e.Ctx, `SELECT string_agg(encode(code_hash, 'hex'), ',' ORDER BY code_hash)
			FROM recovery_codes WHERE user_id = $1`, alice.ID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := hashes()

	cases := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"no CSRF token", url.Values{"code": {e.code(secret)}}, http.StatusForbidden, "could not be verified"},
		{"no code", url.Values{"csrf_token": {csrf}}, http.StatusBadRequest, "Enter the 6-digit code"},
		{"wrong code", url.Values{"csrf_token": {csrf}, "code": {e.wrongCode(secret)}}, http.StatusUnauthorized, "code is not right"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := laptop.Post(regenerate, tc.form)
			if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
				t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
			}
			if hashes() != before || !e.live(t, phoneSID) {
				t.Fatal("a bad request changed the codes or ended a session")
			}
		})
	}

	t.Run("a current code makes a new set", func(t *testing.T) {
		p := laptop.Post(regenerate, url.Values{"csrf_token": {csrf}, "code": {e.code(secret)}})
		servertest.WantPage(t, p, "/account/mfa/recovery-codes", http.StatusOK, "recovery codes")
		fresh := recoveryCodes(t, p)
		if _, err := e.Srv.TOTP.Verify(e.Ctx, alice.ID, old[0]); !errors.Is(err, mfa.ErrInvalidCode) {
			t.Errorf("an old recovery code: %v, want ErrInvalidCode", err)
		}
		if _, err := e.Srv.TOTP.Verify(e.Ctx, alice.ID, fresh[0]); err != nil {
			t.Errorf("a new recovery code does not verify: %v", err)
		}
		if got := e.revokedReason(t, phoneSID); got != sessions.ReasonFactorsChanged {
			t.Errorf("phone session: revoked reason %q, want %q", got, sessions.ReasonFactorsChanged)
		}
		e.mustSession(t, laptop)
		if n := e.OwnChanges(alice.ID, audit.ActionRegenerateRecoveryCodes); n != 1 {
			t.Errorf("the new codes are in the audit log %d times, want once", n)
		}
	})
}

func TestAccount_DisableMFA(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	secret, recovery := e.enroll(t, alice)
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	e.signIn(t, laptop, alice.Email, secret)
	e.signIn(t, phone, alice.Email, secret)
	laptopSID, phoneSID := e.mustSession(t, laptop).ID, e.mustSession(t, phone).ID
	csrf := laptop.Get(e.URL + "/account").CSRF(t)
	disable := e.URL + "/account/mfa/disable"

	cases := []struct {
		name    string
		require bool // the user's own RequireMFA
		form    url.Values
		status  int
		want    string
	}{
		{"no CSRF token", false, url.Values{"password": {password}, "code": {recovery[0]}}, http.StatusForbidden, "could not be verified"},
		{"no password", false, url.Values{"csrf_token": {csrf}, "code": {recovery[0]}}, http.StatusBadRequest, "Enter your password and a current code"},
		{"no code", false, url.Values{"csrf_token": {csrf}, "password": {password}}, http.StatusBadRequest, "Enter your password and a current code"},
		{"wrong password", false, url.Values{"csrf_token": {csrf}, "password": {"wrong password"}, "code": {recovery[0]}}, http.StatusUnauthorized, "password is not right"},
		{"wrong code", false, url.Values{"csrf_token": {csrf}, "password": {password}, "code": {e.wrongCode(secret)}}, http.StatusUnauthorized, "code is not right"},
		{"unknown recovery code", false, url.Values{"csrf_token": {csrf}, "password": {password}, "code": {"00000-00000"}}, http.StatusUnauthorized, "code is not right"},
		{"required for the user", true, url.Values{"csrf_token": {csrf}, "password": {password}, "code": {recovery[0]}}, http.StatusForbidden, "required for your account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.Srv.Users.SetRequireMFA(e.Ctx, alice.ID, tc.require); err != nil {
				t.Fatal(err)
			}
			p := laptop.Post(disable, tc.form)
			if p.Status != tc.status || !strings.Contains(p.Body, tc.want) {
				t.Fatalf("status %d, want %d with %q:\n%s", p.Status, tc.status, tc.want, p.Body)
			}
			if !e.enabled(t, alice.ID) || !e.live(t, phoneSID) {
				t.Fatal("a refused request turned 2FA off or ended a session")
			}
		})
	}
	if err := e.Srv.Users.SetRequireMFA(e.Ctx, alice.ID, false); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Srv.TOTP.RemainingRecoveryCodes(e.Ctx, alice.ID); err != nil || n != mfa.RecoveryCodeCount {
		t.Fatalf("recovery codes left: %d (%v); refusals must not spend recovery[0]", n, err)
	}

	if n := e.OwnChanges(alice.ID, audit.ActionDisableMFA); n != 0 {
		t.Fatalf("refusals to turn 2FA off are in the audit log %d times", n)
	}
	t.Run("password and a recovery code turn it off", func(t *testing.T) {
		p := laptop.Post(disable, url.Values{"csrf_token": {csrf}, "password": {password}, "code": {recovery[0]}})
		servertest.WantPage(t, p, "/account", http.StatusOK, "Two-factor authentication is off")
		if e.enabled(t, alice.ID) {
			t.Fatal("2FA is still on")
		}
		if n, _ := e.Srv.TOTP.RemainingRecoveryCodes(e.Ctx, alice.ID); n != 0 {
			t.Errorf("%d recovery codes left, want 0", n)
		}
		if got := e.revokedReason(t, phoneSID); got != sessions.ReasonFactorsChanged {
			t.Errorf("phone session: revoked reason %q, want %q", got, sessions.ReasonFactorsChanged)
		}
		if !e.live(t, laptopSID) {
			t.Error("the session that turned 2FA off was ended")
		}
		if n := e.OwnChanges(alice.ID, audit.ActionDisableMFA); n != 1 {
			t.Errorf("turning 2FA off is in the audit log %d times, want once", n)
		}
	})
}

// TestAccount_DisableMFA_DropsACR: the session in which 2FA is turned off
// lives on with one factor: the next ID token an app gets says pwd, and
// the tokens issued before, which claimed two factors, are dead (the app
// signs the person in again, silently, to get true ones).
func TestAccount_DisableMFA_DropsACR(t *testing.T) {
	e := newEnv(t)
	alice := e.CreateUser("alice@example.com", password)
	secret, recovery := e.enroll(t, alice)
	laptop := servertest.NewBrowser(t)
	e.signIn(t, laptop, alice.Email, secret)
	app := e.NewRP("app")
	before := e.signInTo(t, laptop, app, alice.Email)
	sid := before.sid
	if s := e.mustSession(t, laptop); s.ACR != sessions.ACRMFA || s.SecondFactorAt.IsZero() {
		t.Fatalf("before: session %+v, want two factors", s)
	}

	p := laptop.Post(e.URL+"/account/mfa/disable", url.Values{"csrf_token": {laptop.Get(e.URL + "/account").CSRF(t)},
		"password": {password}, "code": {recovery[0]}})
	servertest.WantPage(t, p, "/account", http.StatusOK, "Two-factor authentication is off")

	s := e.mustSession(t, laptop)
	if s.ID != sid || s.ACR != sessions.ACRPassword || !slices.Equal(s.AMR, []string{sessions.AMRPassword}) || !s.SecondFactorAt.IsZero() {
		t.Fatalf("after: session %s acr %q amr %v second factor at %v; want the same session, password only",
			s.ID, s.ACR, s.AMR, s.SecondFactorAt)
	}
	if before.active(t) {
		t.Error("an access token that claims two factors is still active")
	}
	if _, err := app.Conf.TokenSource(e.Ctx, &oauth2.Token{RefreshToken: before.tok.RefreshToken}).Token(); err == nil {
		t.Error("a refresh token that claims two factors still works")
	}
	a := app.AuthURL()
	_, _, claims := app.Exchange(t, app.Code(t, laptop.Get(a.URL), a), a)
	if claims["acr"] != sessions.ACRPassword || fmt.Sprint(claims["amr"]) != "[pwd]" || claims["sid"] != sid {
		t.Errorf("the next ID token: acr %v amr %v sid %v; want pwd in the same session", claims["acr"], claims["amr"], claims["sid"])
	}
	var told int
	if err := e.DB.Pool.QueryRow(e.Ctx, `SELECT count(*) FROM outbox WHERE kind = 'logout' AND sid = $1`, sid).Scan(&told); err != nil || told != 0 {
		t.Errorf("%d logout notifications for the session that lives on (%v), want none", told, err)
	}
}

// TestAccount_DisableMFA_RequiredByPolicy: with IDP_REQUIRE_MFA nobody may
// turn 2FA off, and the refusal spends no code.
func TestAccount_DisableMFA_RequiredByPolicy(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.RequireMFA = true })
	bob := e.CreateUser("bob@example.com", password)
	secret, recovery := e.enroll(t, bob)
	b := servertest.NewBrowser(t)
	p := e.signIn(t, b, bob.Email, secret)
	if strings.Contains(p.Body, `action="/account/mfa/disable"`) || !strings.Contains(p.Body, `id="mfa-required"`) {
		t.Fatalf("the page offers to turn off required 2FA:\n%s", p.Body)
	}
	p = b.Post(e.URL+"/account/mfa/disable", url.Values{"csrf_token": {p.CSRF(t)}, "password": {password}, "code": {recovery[0]}})
	servertest.WantPage(t, p, "/account/mfa/disable", http.StatusForbidden, "required for your account")
	if !e.enabled(t, bob.ID) {
		t.Fatal("required 2FA was turned off")
	}
	if _, err := e.Srv.TOTP.Verify(e.Ctx, bob.ID, recovery[0]); err != nil {
		t.Fatalf("the refusal spent the recovery code: %v", err)
	}
}
