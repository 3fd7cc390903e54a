package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
)

const password = "correct horse battery staple"

// env is one provider instance on a fresh database, with the last TOTP
// step each user spent, so every code a test types is new.
type env struct {
	*servertest.Harness
	mu    sync.Mutex
	steps map[string]int64 // user id → last step used
}

func newEnv(t *testing.T, mutate ...func(*server.Config)) *env {
	t.Helper()
	return &env{Harness: servertest.New(t, mutate...), steps: map[string]int64{}}
}

func (e *env) createUser(t *testing.T, email string, admin bool) users.User {
	t.Helper()
	u, err := e.Srv.Users.Create(e.Ctx, users.NewUser{Email: email, Name: "Test " + email, Password: password, Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// code is a code the user's phone shows now, or one step ahead when now's
// step was spent (the provider accepts one step of clock skew).
func (e *env) code(u users.User, secret string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	at := e.Srv.Config.Now() // the instance's clock, which a test may move
	if step := at.Unix() / 30; step <= e.steps[u.ID] {
		at = at.Add(time.Duration(e.steps[u.ID]-step+1) * 30 * time.Second)
	}
	e.steps[u.ID] = at.Unix() / 30
	return mfa.GenerateCode(secret, at)
}

// enroll turns 2FA on for u directly through mfa and returns the secret.
// Sessions u already has keep the factors they were made with.
func (e *env) enroll(t *testing.T, u users.User) string {
	t.Helper()
	en, err := e.Srv.TOTP.Begin(e.Ctx, u.ID, "test", u.Email)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Srv.TOTP.Confirm(e.Ctx, u.ID, "test", e.code(u, en.Secret)); err != nil {
		t.Fatal(err)
	}
	return en.Secret
}

// signIn signs b in as u from start (a URL that sends a visitor to sign
// in), giving a code when secret is set, and returns where it lands.
func (e *env) signIn(t *testing.T, b *servertest.Browser, start string, u users.User, secret string) servertest.Page {
	t.Helper()
	p := b.SignIn(start, u.Email, password)
	if p.URL.Path == "/login/totp" {
		if secret == "" {
			t.Fatalf("%s: sign-in asks for a code and the test has no secret", u.Email)
		}
		p = b.Post(e.URL+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {e.code(u, secret)}})
	}
	return p
}

// adminBrowser returns a browser signed in as a new administrator with
// 2FA, and the administrator.
func (e *env) adminBrowser(t *testing.T, email string) (*servertest.Browser, users.User) {
	t.Helper()
	b, adm, _ := e.adminWithSecret(t, email)
	return b, adm
}

// adminWithSecret is adminBrowser that also returns the TOTP secret, for
// the codes the console asks for later.
func (e *env) adminWithSecret(t *testing.T, email string) (*servertest.Browser, users.User, string) {
	t.Helper()
	adm := e.createUser(t, email, true)
	secret := e.enroll(t, adm)
	b := servertest.NewBrowser(t)
	e.signIn(t, b, e.URL+"/admin", adm, secret)
	servertest.WantPage(t, b.Get(e.URL+"/admin"), "/admin", http.StatusOK, "Find a user by email")
	return b, adm, secret
}

// app is a registered client with a back-channel logout endpoint that
// verifies every token (servertest.Receiver) and refuses them (400) while
// told to.
type app struct {
	rp *servertest.RP
	*servertest.Receiver
}

func (e *env) newApp(t *testing.T, id string) *app {
	t.Helper()
	a := &app{Receiver: e.NewReceiver(id)}
	a.rp = e.NewRP(id, func(c *clients.Client) {
		c.BackchannelLogoutURI = a.URL + "/logout"
		c.BackchannelLogoutSessionRequired = true
	})
	return a
}

// acceptedCount is the number of notifications the app accepted.
func (a *app) acceptedCount() int { return len(a.Tokens()) }

// signInTo signs b in to a as u (password only) and returns the sid.
func (e *env) signInTo(t *testing.T, b *servertest.Browser, a *app, u users.User) string {
	t.Helper()
	req := a.rp.AuthURL()
	p := b.Get(req.URL)
	if p.IsLoginForm() {
		p = b.SignIn(req.URL, u.Email, password)
	}
	_, _, claims := a.rp.Exchange(t, a.rp.Code(t, p, req), req)
	sid, _ := claims["sid"].(string)
	if sid == "" {
		t.Fatal("the ID token has no sid")
	}
	return sid
}

// revokedReason is why the session sid ended ("" while live).
func (e *env) revokedReason(t *testing.T, sid string) string {
	t.Helper()
	s, err := e.Srv.Sessions.Get(e.Ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	return s.RevokedReason
}

// audited counts audit records of action on target by actor.
func (e *env) audited(t *testing.T, actor, action, target string) int {
	t.Helper()
	var n int
	err := e.DB.Pool.QueryRow(e.Ctx, `SELECT count(*) FROM audit_log WHERE actor = $1 AND action = $2 AND target = $3`,
		actor, action, target).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// post submits the form on page p whose action is action, with its CSRF
// token, without following the redirect, so the test sees the 303.
func post(t *testing.T, b *servertest.Browser, p servertest.Page, action string) *http.Response {
	t.Helper()
	if !strings.Contains(p.Body, `action="`+action+`"`) {
		t.Fatalf("page %s has no form posting to %s:\n%s", p.URL, action, p.Body)
	}
	return postToken(t, b, p.URL.Scheme+"://"+p.URL.Host+action, p.CSRF(t))
}

func postToken(t *testing.T, b *servertest.Browser, u, token string) *http.Response {
	t.Helper()
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(u, url.Values{"csrf_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
