package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/verify"
)

func withSignup(c *server.Config) {
	c.SelfSignup = true
	c.SignupDomains = []string{"example.com"}
}

// signUp posts the sign-up form from the sign-in page's link.
func signUp(t *testing.T, h *servertest.Harness, br *servertest.Browser, email, pw string) servertest.Page {
	t.Helper()
	p := br.Get(h.Issuer + "/signup")
	servertest.WantPage(t, p, "/signup", http.StatusOK, `id="sign-up"`)
	servertest.CheckMarkup(t, p.Body)
	return br.Post(h.Issuer+"/signup", url.Values{"csrf_token": {p.CSRF(t)}, "email": {email}, "name": {"Dana"}, "new_password": {pw}})
}

// TestSignup: with IDP_SELF_SIGNUP and an allowed domain, signing up
// mails a link and makes no account; opening the link changes nothing;
// confirming makes the account, its address verified, and it signs in
// with email_verified true. A domain not allowed is refused; an address
// with an account gets the same answer and nothing is stored or mailed.
func TestSignup(t *testing.T) {
	h, smtp := withMail(t, withSignup)
	rp := h.NewRP("app")
	const pw = "a long enough password 1"

	if p := servertest.NewBrowser(t).Get(rp.AuthURL().URL); !strings.Contains(p.Body, `href="/signup" id="sign-up"`) {
		t.Fatalf("the sign-in page does not offer sign-up:\n%s", p.Body)
	}
	br := servertest.NewBrowser(t)
	p := signUp(t, h, br, "dana@example.com", pw)
	servertest.WantPage(t, p, "/signup", http.StatusOK, `id="signup-sent"`)
	if _, err := h.Srv.Users.ByEmail(h.Ctx, "dana@example.com"); err == nil || signsIn(t, h, "dana@example.com", pw) {
		t.Fatal("an account exists before its link is confirmed")
	}
	m := smtp.Wait("dana@example.com", 1, mailWait)
	link := m.Link(t)
	if !strings.HasPrefix(link, h.Issuer+verify.SignupPath+"?token=") {
		t.Fatalf("link %q", link)
	}

	before := h.Stored(t)
	cb := servertest.NewBrowser(t)
	p = cb.Get(link)
	servertest.WantPage(t, p, verify.SignupPath, http.StatusOK, `id="confirm"`)
	servertest.CheckMarkup(t, p.Body)
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
		t.Fatalf("opening the link changed %v", changed)
	}
	p = cb.Post(h.Issuer+verify.SignupPath, url.Values{"csrf_token": {p.CSRF(t)}, "token": {strings.SplitN(link, "token=", 2)[1]}})
	servertest.WantPage(t, p, verify.SignupPath, http.StatusOK, `id="signup-done"`)
	u, err := h.Srv.Users.ByEmail(h.Ctx, "dana@example.com")
	if err != nil || !u.EmailVerified() || u.IsAdmin || h.OwnChanges(u.ID, verify.ActionSelfSignup) != 1 {
		t.Fatalf("after confirmation: %+v %v; want a verified, audited, ordinary account", u, err)
	}
	claims, info := emailClaims(t, rp, "dana@example.com", pw)
	if claims["email_verified"] != true || info["email_verified"] != true {
		t.Fatalf("claims %v, userinfo %v", claims, info)
	}
	p = cb.Get(link)
	servertest.WantPage(t, p, verify.SignupPath, http.StatusGone, "already used")

	t.Run("domain not allowed", func(t *testing.T) {
		before := h.Stored(t)
		p := signUp(t, h, servertest.NewBrowser(t), "eve@elsewhere.org", pw)
		servertest.WantPage(t, p, "/signup", http.StatusBadRequest, "open only to addresses at example.com")
		if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
			t.Errorf("a refused sign-up changed %v", changed)
		}
	})
	t.Run("address with an account", func(t *testing.T) {
		waitMailDelivered(t, h)
		mails := len(smtp.Messages())
		taken := signUp(t, h, servertest.NewBrowser(t), "dana@example.com", pw)
		free := signUp(t, h, servertest.NewBrowser(t), "fred@example.com", pw)
		if taken.Status != free.Status || strings.ReplaceAll(taken.Body, "dana@", "X@") != strings.ReplaceAll(free.Body, "fred@", "X@") {
			t.Errorf("the answers differ:\n%s\n---\n%s", taken.Body, free.Body)
		}
		smtp.Wait("fred@example.com", 1, mailWait)
		waitMailDelivered(t, h)
		if n := len(smtp.Messages()) - mails; n != 1 {
			t.Errorf("%d mails, want one (to the free address)", n)
		}
		if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM signups WHERE email = 'dana@example.com'`); n != 1 {
			t.Errorf("%d sign-ups for dana, want the first one only", n)
		}
	})
	t.Run("bad links", func(t *testing.T) {
		for _, tok := range []string{"", "x", strings.Repeat("A", 300)} {
			p := servertest.NewBrowser(t).Get(h.Issuer + verify.SignupPath + "?token=" + tok)
			servertest.WantPage(t, p, verify.SignupPath, http.StatusBadRequest, "No account was made")
		}
		p := servertest.NewBrowser(t).Post(h.Issuer+verify.SignupPath, url.Values{"token": {"x"}})
		servertest.WantPage(t, p, verify.SignupPath, http.StatusForbidden, "Nothing was changed")
	})
}

// TestSignup_Off: without IDP_SELF_SIGNUP there is no sign-up page, and
// the sign-in page offers none.
func TestSignup_Off(t *testing.T) {
	h, _ := withMail(t)
	rp := h.NewRP("app")
	if p := servertest.NewBrowser(t).Get(rp.AuthURL().URL); strings.Contains(p.Body, `id="sign-up"`) {
		t.Error("the sign-in page offers sign-up")
	}
	p := servertest.NewBrowser(t).Get(h.Issuer + "/signup")
	servertest.WantPage(t, p, "/signup", http.StatusNotFound, "not open here")
}
