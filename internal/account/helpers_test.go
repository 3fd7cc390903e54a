package account_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

const password = "correct horse battery staple"

// env is one instance with its clock.
type env struct {
	*servertest.Harness
	clock *clocktest.Clock
}

// newEnv starts an instance whose clock starts in the middle of a 30-second
// step, so a code computed at once is not on a step's edge. It starts five
// minutes in the past: fosite checks auth_time against the real clock and
// refuses one in the future, so the tests' advances must stay behind it.
func newEnv(t *testing.T, mutate ...func(*server.Config)) *env {
	t.Helper()
	c := clocktest.New(time.Now().Add(-5 * time.Minute).Truncate(30 * time.Second).Add(15 * time.Second))
	mutate = append([]func(*server.Config){func(cfg *server.Config) { cfg.Now = c.Now }}, mutate...)
	return &env{Harness: servertest.New(t, mutate...), clock: c}
}

// code is what the user's phone shows one step later than the last code:
// each accepted step is spent, so every code a test types must be new.
func (e *env) code(secret string) string {
	e.clock.Advance(30 * time.Second)
	return mfa.GenerateCode(secret, e.clock.Now())
}

// wrongCode is a well-formed code that no step around now accepts.
func (e *env) wrongCode(secret string) string {
	now := e.clock.Now()
	valid := map[string]bool{}
	for i := -2; i <= 2; i++ {
		valid[mfa.GenerateCode(secret, now.Add(time.Duration(i)*30*time.Second))] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%06d", n); !valid[c] {
			return c
		}
	}
}

// enroll turns 2FA on for u directly through mfa, returning the secret and
// the recovery codes.
func (e *env) enroll(t *testing.T, u users.User) (secret string, recovery []string) {
	t.Helper()
	en, err := e.Srv.TOTP.Begin(e.Ctx, u.ID, "test", u.Email)
	if err != nil {
		t.Fatal(err)
	}
	recovery, err = e.Srv.TOTP.Confirm(e.Ctx, u.ID, "test", e.code(en.Secret))
	if err != nil {
		t.Fatal(err)
	}
	return en.Secret, recovery
}

// signIn signs b in on /account (with a code when secret is set) and
// returns the account page it lands on.
func (e *env) signIn(t *testing.T, b *servertest.Browser, email, secret string) servertest.Page {
	t.Helper()
	p := b.SignIn(e.URL+"/account", email, password)
	if p.URL.Path == "/login/totp" {
		if secret == "" {
			t.Fatalf("%s: sign-in asks for a code and the test has no secret", email)
		}
		p = b.Post(e.URL+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {e.code(secret)}})
	}
	if p.URL.Path != "/account" || p.Status != http.StatusOK {
		t.Fatalf("%s: after sign-in at %s (%d), want /account:\n%s", email, p.URL, p.Status, p.Body)
	}
	return p
}

// signedInApp is one app's tokens for one browser.
type signedInApp struct {
	rp  *servertest.RP
	tok *oauth2.Token
	sid string
}

// signInTo signs b in to app (with the password form if needed) and
// exchanges the code.
func (e *env) signInTo(t *testing.T, b *servertest.Browser, app *servertest.RP, email string) signedInApp {
	t.Helper()
	a := app.AuthURL()
	p := b.Get(a.URL)
	if p.IsLoginForm() {
		p = b.SignIn(a.URL, email, password)
	}
	tok, _, claims := app.Exchange(t, app.Code(t, p, a), a)
	sid, _ := claims["sid"].(string)
	return signedInApp{rp: app, tok: tok, sid: sid}
}

func (s signedInApp) active(t *testing.T) bool {
	t.Helper()
	return s.rp.Introspect(t, s.tok.AccessToken)["active"] == true
}

// cookie is b's session cookie value ("" when it has none).
func (e *env) cookie(b *servertest.Browser) string {
	u, _ := url.Parse(e.URL)
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == e.Srv.Sessions.CookieName() {
			return c.Value
		}
	}
	return ""
}

// session is b's live session, as the server sees it.
func (e *env) session(t *testing.T, b *servertest.Browser) (sessions.Session, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if v := e.cookie(b); v != "" {
		r.AddCookie(&http.Cookie{Name: e.Srv.Sessions.CookieName(), Value: v})
	}
	return e.Srv.Sessions.Current(e.Ctx, r)
}

// mustSession is b's live session; the test fails without one.
func (e *env) mustSession(t *testing.T, b *servertest.Browser) sessions.Session {
	t.Helper()
	s, err := e.session(t, b)
	if err != nil {
		t.Fatalf("browser has no live session: %v", err)
	}
	return s
}

// live reports whether the session sid is still live.
func (e *env) live(t *testing.T, sid string) bool {
	t.Helper()
	s, err := e.Srv.Sessions.Get(e.Ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	return s.RevokedAt == nil
}

// revokedReason is why sid ended ("" while live).
func (e *env) revokedReason(t *testing.T, sid string) string {
	t.Helper()
	s, err := e.Srv.Sessions.Get(e.Ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	return s.RevokedReason
}

func (e *env) enabled(t *testing.T, userID string) bool {
	t.Helper()
	on, err := e.Srv.TOTP.Enabled(e.Ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	return on
}
