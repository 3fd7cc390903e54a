package login_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/servertest"
)

// The sign-in forms' fuzz targets share one provider and database per
// target, set up once: each input is one request (or a few) against it,
// and the database is read before and after. A request the forms refuse
// must store nothing; only the throttle, which counts refused tries by
// design, may change (servertest.Stored leaves a flow's count of wrong
// codes out for the same reason).

// signInSite is a provider with an app and two accounts: plain (a
// password only) and totp (a password and an authenticator app, with
// its recovery codes).
type signInSite struct {
	h        *servertest.Harness
	app      *servertest.RP
	secret   string   // totp's authenticator secret
	recovery []string // totp's recovery codes, the unused ones first
}

const (
	plainEmail = "plain@example.com"
	totpEmail  = "totp@example.com"
)

func newSignInSite(f *testing.F) *signInSite {
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	s := &signInSite{h: h, app: h.NewRP("app")}
	h.CreateUser(plainEmail, password)
	u := h.CreateUser(totpEmail, password)
	en, err := h.Srv.TOTP.Begin(h.Ctx, u.ID, "test", u.Email)
	if err != nil {
		f.Fatal(err)
	}
	// A code of the previous step, so that the inputs' {totp} (this step's)
	// is not a replay.
	s.secret = en.Secret
	s.recovery, err = h.Srv.TOTP.Confirm(h.Ctx, u.ID, "test", mfa.GenerateCode(en.Secret, time.Now().Add(-30*time.Second)))
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// browser is a cookie-keeping client that does not follow redirects, so
// each request's own answer is seen.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status   int
	location string
	body     string
}

func do(t testing.TB, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Location"), string(b)}
}

func get(t testing.TB, c *http.Client, u string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return do(t, c, req)
}

func post(t testing.TB, c *http.Client, u, body string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

var csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// startFlow begins a sign-in at the app with c and returns the sign-in
// form's CSRF token.
func (s *signInSite) startFlow(t testing.TB, c *http.Client) string {
	t.Helper()
	if a := get(t, c, s.app.AuthURL().URL); a.status != http.StatusSeeOther || !strings.HasPrefix(a.location, "/login") {
		t.Fatalf("the authorization request led to %d %s", a.status, a.location)
	}
	a := get(t, c, s.h.URL+"/login")
	m := csrfRe.FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no sign-in form (%d):\n%.300s", a.status, a.body)
	}
	return m[1]
}

func (s *signInSite) forgetTries(t testing.TB) {
	t.Helper()
	if _, err := s.h.DB.Pool.Exec(s.h.Ctx, `DELETE FROM throttle`); err != nil {
		t.Fatal(err)
	}
}

// expand fills an input's placeholders, which stand for what only the
// running site knows.
func expand(body string, values map[string]string) string {
	for k, v := range values {
		body = strings.ReplaceAll(body, "{"+k+"}", url.QueryEscape(v))
	}
	return body
}

// refusedStoresNothing fails t when a refused answer (not a redirect)
// changed anything but the throttle.
func refusedStoresNothing(t testing.TB, a answer, before, after servertest.Stored) {
	t.Helper()
	if a.status >= 500 {
		t.Fatalf("status %d:\n%.500s", a.status, a.body)
	}
	if a.status != http.StatusSeeOther {
		if changed := before.Changed(after, "throttle"); len(changed) > 0 {
			t.Fatalf("refused with %d, yet %v changed:\n%.300s", a.status, changed, a.body)
		}
	}
}

// FuzzHandler_PasswordSubmit posts arbitrary bodies to the password form
// of a fresh sign-in ({csrf} is its token, {password} the accounts'
// password). No 5xx; a refusal stores nothing; and only the right
// password of an account moves the sign-in on. Every input hashes a
// password (the throttle is cleared so that each is checked): at the
// least cost argon2id allows (servertest.CheapPasswords), yet the seeds
// are kept few.
func FuzzHandler_PasswordSubmit(f *testing.F) {
	for _, body := range []string{
		"csrf_token={csrf}&email=plain%40example.com&password={password}",
		"csrf_token={csrf}&email=totp%40example.com&password={password}&remember=on",
		"csrf_token={csrf}&email=plain%40example.com&password=wrong+password",
		"csrf_token=forged&email=plain%40example.com&password={password}",
		"email=plain%40example.com&password={password}",
		"csrf_token={csrf}&email=not+an+address&password=%00%ff",
		"csrf_token={csrf}&csrf_token=x&email=nobody%40example.com&email=plain%40example.com&password={password}",
		// Found by fuzzing: an address that is not UTF-8, or that is once
		// the throttle's key cuts it to 254 bytes, was a 500.
		"csrf_token={csrf}&email=plain%ed%40example.com&password=x",
		"csrf_token={csrf}&email=" + strings.Repeat("a", 253) + "%C3%A9&password=x",
	} {
		f.Add(body)
	}
	s := newSignInSite(f)
	f.Fuzz(func(t *testing.T, body string) {
		s.forgetTries(t)
		c := browser()
		csrf := s.startFlow(t, c)
		body = expand(body, map[string]string{"csrf": csrf, "password": password})
		before := s.h.Stored(t)
		a := post(t, c, s.h.URL+"/login", body)
		refusedStoresNothing(t, a, before, s.h.Stored(t))
		if a.status == http.StatusSeeOther {
			form, _ := url.ParseQuery(body)
			if norm.NFKC.String(form.Get("password")) != password || form.Get("csrf_token") != csrf {
				t.Fatalf("signed in (to %s) with password %q and csrf_token %q", a.location, form.Get("password"), form.Get("csrf_token"))
			}
		}
	})
}

// FuzzHandler_TOTPSubmit posts arbitrary bodies to the code form, where
// an authenticator code or a recovery code is entered ({csrf} is the
// sign-in's token, {totp} a code of this time step, {recovery} an unused
// recovery code). No 5xx; a refusal stores nothing; and the sign-in
// finishes only with a right code. One sign-in serves every input until
// one finishes it; its wrong codes are forgiven between inputs, so it is
// never ended for them.
func FuzzHandler_TOTPSubmit(f *testing.F) {
	for _, body := range []string{
		"csrf_token={csrf}&code={totp}",
		"csrf_token={csrf}&code={recovery}",
		"csrf_token={csrf}&code=000000",
		"csrf_token={csrf}&code=zzzzz-zzzzz",
		"csrf_token={csrf}&code=12345",
		"csrf_token={csrf}&code=+1234567+",
		"csrf_token=forged&code={totp}",
		"code={recovery}",
		"csrf_token={csrf}&code=%00&code={totp}",
	} {
		f.Add(body)
	}
	s := newSignInSite(f)
	var (
		c    *http.Client
		csrf string
	)
	f.Fuzz(func(t *testing.T, body string) {
		s.forgetTries(t)
		if c == nil {
			c = browser()
			csrf = s.startFlow(t, c)
			a := post(t, c, s.h.URL+"/login", url.Values{"csrf_token": {csrf}, "email": {totpEmail}, "password": {password}}.Encode())
			if a.location != "/login/totp" {
				t.Fatalf("the password led to %d %s, want the code form", a.status, a.location)
			}
		}
		if _, err := s.h.DB.Pool.Exec(s.h.Ctx, `UPDATE login_flows SET mfa_failures = 0`); err != nil {
			t.Fatal(err)
		}
		code := mfa.GenerateCode(s.secret, time.Now())
		recovery := s.recovery[0]
		body = expand(body, map[string]string{"csrf": csrf, "totp": code, "recovery": recovery})
		before := s.h.Stored(t)
		a := post(t, c, s.h.URL+"/login/totp", body)
		refusedStoresNothing(t, a, before, s.h.Stored(t))
		if a.status == http.StatusSeeOther {
			c = nil // the sign-in is over: the next input starts another
			form, _ := url.ParseQuery(body)
			got := strings.TrimSpace(form.Get("code"))
			switch {
			case form.Get("csrf_token") != csrf:
				t.Fatalf("signed in with csrf_token %q", form.Get("csrf_token"))
			case strings.EqualFold(got, recovery):
				s.recovery = append(s.recovery[1:], recovery) // used up
			case !validTOTP(s.secret, got):
				t.Fatalf("signed in (to %s) with code %q", a.location, got)
			}
		}
	})
}

// validTOTP reports whether code is the authenticator's of now or a step
// either side (the skew the provider allows).
func validTOTP(secret, code string) bool {
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		if code == mfa.GenerateCode(secret, time.Now().Add(d)) {
			return true
		}
	}
	return false
}

// FuzzHandler_FlowCookie sends arbitrary Cookie headers ({token} is a
// live sign-in's cookie value) to the sign-in pages and the code form.
// No 5xx, nothing stored, and a sign-in is found only by its exact
// cookie: the form shows the sign-in's CSRF token exactly when the header
// carries its cookie, as net/http reads it.
func FuzzHandler_FlowCookie(f *testing.F) {
	for _, cookie := range []string{
		"idp_login={token}",
		`idp_login="{token}"`,
		"idp_login={token}x",
		"idp_login= {token}",
		"idp_login=x; idp_login={token}",
		"other=1; idp_login={token}; idp_session=x",
		"__Host-idp_login={token}",
		"IDP_LOGIN={token}",
		"idp_login=",
		"idp_login=%00",
		"",
	} {
		f.Add(cookie, uint8(0))
	}
	f.Add("idp_login={token}", uint8(1))
	f.Add("idp_login={token}", uint8(2))
	s := newSignInSite(f)
	c := browser()
	csrf := s.startFlow(f, c)
	u, _ := url.Parse(s.h.URL)
	var token string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "idp_login" {
			token = ck.Value
		}
	}
	if token == "" {
		f.Fatal("the sign-in set no idp_login cookie")
	}
	f.Fuzz(func(t *testing.T, cookie string, page uint8) {
		cookie = strings.ReplaceAll(cookie, "{token}", token)
		var req *http.Request
		switch page % 3 {
		case 0:
			req, _ = http.NewRequest("GET", s.h.URL+"/login", nil)
		case 1:
			req, _ = http.NewRequest("GET", s.h.URL+"/login/totp", nil)
		case 2:
			req, _ = http.NewRequest("POST", s.h.URL+"/login/totp", strings.NewReader("code=000000&csrf_token="+csrf))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Cookie", cookie)
		before := s.h.Stored(t)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			return // not a header net/http sends
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d:\n%.500s", resp.StatusCode, b)
		}
		if changed := before.Changed(s.h.Stored(t)); len(changed) > 0 {
			t.Fatalf("%v changed (status %d)", changed, resp.StatusCode)
		}
		parsed, _ := (&http.Request{Header: http.Header{"Cookie": {cookie}}}).Cookie("idp_login")
		found := strings.Contains(string(b), csrf)
		// The sign-in is at the password stage: the code form's routes
		// send it back there (303) when they find it.
		if page%3 != 0 {
			found = resp.StatusCode == http.StatusSeeOther
		}
		if mine := parsed != nil && parsed.Value == token; found != mine {
			t.Fatalf("page %d: the sign-in found %v, but the header carries its cookie: %v (status %d)", page%3, found, mine, resp.StatusCode)
		}
	})
}
