package servertest

import (
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/users"
)

// Phone is a user's authenticator app, enrolled through mfa. Its codes
// follow the instance's clock (a test's clocktest moves them too), and
// each is of a time step not used before: the provider accepts a step
// once, and one step of skew, so a phone gives at most two codes in one
// step of the clock.
type Phone struct {
	T      testing.TB
	Secret string
	now    func() time.Time

	mu   sync.Mutex
	last int64 // the last step a code was given for
}

// EnrollTOTP turns 2FA on for u directly through mfa and returns the phone.
// Sessions u already has keep the factors they were made with.
func (h *Harness) EnrollTOTP(u users.User) *Phone {
	h.T.Helper()
	en, err := h.Srv.TOTP.Begin(h.Ctx, u.ID, "test", u.Email)
	if err != nil {
		h.T.Fatal(err)
	}
	p := &Phone{T: h.T, Secret: en.Secret, now: h.Srv.Config.Now}
	if _, err := h.Srv.TOTP.Confirm(h.Ctx, u.ID, "test", p.Code()); err != nil {
		h.T.Fatal(err)
	}
	return p
}

// Code is the code the phone shows now, or one step ahead when now's
// step was used.
func (p *Phone) Code() string {
	p.T.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	step := now.Unix() / 30
	if step <= p.last {
		step = p.last + 1
	}
	if step > now.Unix()/30+1 {
		p.T.Fatal("servertest: a third code in one 30-second step; the provider would refuse it as a replay")
	}
	p.last = step
	return mfa.GenerateCode(p.Secret, time.Unix(step*30, 0))
}

// SignInWithCode drives the password form and then the code form, and
// returns the page the browser ends on.
func (b *Browser) SignInWithCode(start, email, password string, phone *Phone) Page {
	b.T.Helper()
	p := b.SignIn(start, email, password)
	if p.URL.Path != "/login/totp" {
		b.T.Fatalf("after the password: %s (%d), want the code form:\n%s", p.URL, p.Status, p.Body)
	}
	return b.Post(p.URL.Scheme+"://"+p.URL.Host+"/login/totp", url.Values{"csrf_token": {p.CSRF(b.T)}, "code": {phone.Code()}})
}
