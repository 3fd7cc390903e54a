package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/internal/verify"
)

// adminCreate creates an account through the admin API, as an HR system
// (an admin service account) would.
func adminCreate(t *testing.T, h *servertest.Harness, email, pw string) users.User {
	t.Helper()
	secret, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "hr-system",
		GrantTypes: []string{clients.GrantClientCredentials}, AdminServiceAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := (&clientcredentials.Config{ClientID: "hr-system", ClientSecret: secret, TokenURL: h.Issuer + "/oauth2/token",
		Scopes: []string{admin.Scope}}).Token(h.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"email": email, "name": "Ann", "password": pw, "temporary": false})
	req, _ := http.NewRequest("POST", h.Issuer+"/admin/api/users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u users.User
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create through the admin API: %d %v", resp.StatusCode, err)
	}
	return u
}

// emailClaims signs in to rp in a new browser and returns the ID token's
// claims and userinfo's.
func emailClaims(t *testing.T, rp *servertest.RP, email, pw string) (idToken, userinfo map[string]any) {
	t.Helper()
	a := rp.AuthURL()
	p := servertest.NewBrowser(t).SignIn(a.URL, email, pw)
	tok, _, claims := rp.Exchange(t, rp.Code(t, p, a), a)
	info, err := rp.Provider.UserInfo(rp.H.Ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	if err := info.Claims(&ui); err != nil {
		t.Fatal(err)
	}
	return claims, ui
}

// confirmPage opens a verification link: the page, and the form's fields.
func confirmPage(t *testing.T, br *servertest.Browser, link string) (servertest.Page, url.Values) {
	t.Helper()
	p := br.Get(link)
	if p.Status != http.StatusOK {
		return p, nil
	}
	servertest.CheckMarkup(t, p.Body)
	u, _ := url.Parse(link)
	return p, url.Values{"csrf_token": {p.CSRF(t)}, "token": {u.Query().Get("token")}}
}

func verifiedAt(t *testing.T, h *servertest.Harness, userID string) bool {
	t.Helper()
	return dbtest.Value[bool](t, h.DB.Pool, `SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1`, userID)
}

// TestVerify_AdminCreatedAccount: an account made through the admin API
// is mailed a link; until it is confirmed the ID token and userinfo carry
// the address without email_verified (never false: oauth2-proxy refuses
// that by default); opening the link changes nothing; its Confirm button
// verifies the address, and both then say email_verified true.
func TestVerify_AdminCreatedAccount(t *testing.T) {
	h, smtp := withMail(t)
	rp := h.NewRP("app")
	const pw = "a long enough password 1"
	ann := adminCreate(t, h, "ann@example.com", pw)

	claims, info := emailClaims(t, rp, ann.Email, pw)
	if claims["email"] != ann.Email || info["email"] != ann.Email {
		t.Fatalf("email: ID token %v, userinfo %v; want %s", claims["email"], info["email"], ann.Email)
	}
	if _, ok := claims["email_verified"]; ok {
		t.Errorf("the ID token of an unconfirmed address has email_verified = %v; want the claim left out", claims["email_verified"])
	}
	if _, ok := info["email_verified"]; ok {
		t.Errorf("userinfo of an unconfirmed address has email_verified = %v; want the claim left out", info["email_verified"])
	}

	m := smtp.Wait(ann.Email, 1, mailWait)
	link := m.Link(t)
	if !strings.HasPrefix(link, h.Issuer+verify.LinkPath+"?token=") || !strings.Contains(m.Header.Get("Subject"), "Confirm your") ||
		!strings.Contains(m.Text, "7 days") || !m.TLS {
		t.Fatalf("the mail: subject %q, link %q, TLS %v:\n%s", m.Header.Get("Subject"), link, m.TLS, m.Text)
	}
	if dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM email_verifications WHERE token_hash = sha256(convert_to($1, 'UTF8'))`,
		strings.SplitN(link, "token=", 2)[1]) != 1 {
		t.Error("the link's row is not keyed by the token's SHA-256")
	}

	br := servertest.NewBrowser(t)
	before := h.Stored(t)
	p, form := confirmPage(t, br, link)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, `id="confirm"`)
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 || verifiedAt(t, h, ann.ID) {
		t.Fatalf("opening the link changed %v; want nothing (mail scanners open links)", changed)
	}
	p = br.Post(h.Issuer+verify.LinkPath, form)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, "is confirmed as the address of your account")
	servertest.CheckMarkup(t, p.Body)
	if !verifiedAt(t, h, ann.ID) || h.OwnChanges(ann.ID, verify.ActionVerified) != 1 {
		t.Fatal("after Confirm the address is not verified, or not audited")
	}

	claims, info = emailClaims(t, rp, ann.Email, pw)
	if claims["email_verified"] != true || info["email_verified"] != true {
		t.Fatalf("after confirmation: ID token email_verified %v, userinfo %v; want true", claims["email_verified"], info["email_verified"])
	}

	// The same link again: refused with a clear page.
	p = br.Get(link)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusGone, "already used")
}

// TestVerify_BadLinks: an expired, used, tampered or unknown link, or a
// form without its CSRF token, gets a clear page and changes nothing.
func TestVerify_BadLinks(t *testing.T) {
	h, smtp := withMail(t)
	ann := adminCreate(t, h, "ann@example.com", "a long enough password 1")
	link := smtp.Wait(ann.Email, 1, mailWait).Link(t)
	token := strings.SplitN(link, "token=", 2)[1]
	br := servertest.NewBrowser(t)
	_, form := confirmPage(t, br, link) // a valid form's CSRF token, for the posts below
	waitMailDelivered(t, h)

	post := func(token string) servertest.Page {
		return br.Post(h.Issuer+verify.LinkPath, url.Values{"csrf_token": form["csrf_token"], "token": {token}})
	}
	refused := func(t *testing.T, status int, want string, token string) {
		t.Helper()
		before := h.Stored(t)
		p := br.Get(h.Issuer + verify.LinkPath + "?token=" + url.QueryEscape(token))
		servertest.WantPage(t, p, verify.LinkPath, status, want)
		p = post(token)
		servertest.WantPage(t, p, verify.LinkPath, status, want)
		servertest.CheckMarkup(t, p.Body)
		if !strings.Contains(p.Body, "Nothing was changed") {
			t.Errorf("the page does not say nothing changed:\n%s", p.Body)
		}
		if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
			t.Errorf("a refused link changed %v", changed)
		}
	}

	t.Run("tampered", func(t *testing.T) {
		b := []byte(token)
		b[5] ^= 1
		refused(t, http.StatusBadRequest, "not valid", string(b))
		refused(t, http.StatusBadRequest, "not valid", "")
		refused(t, http.StatusBadRequest, "not valid", strings.Repeat("A", 300))
	})
	t.Run("no CSRF token", func(t *testing.T) {
		before := h.Stored(t)
		p := servertest.NewBrowser(t).Post(h.Issuer+verify.LinkPath, url.Values{"token": {token}})
		servertest.WantPage(t, p, verify.LinkPath, http.StatusForbidden, "Nothing was changed")
		if changed := before.Changed(h.Stored(t)); len(changed) != 0 || verifiedAt(t, h, ann.ID) {
			t.Errorf("a post without CSRF changed %v", changed)
		}
	})
	t.Run("expired", func(t *testing.T) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE email_verifications SET expires_at = now() - interval '1 second'`); err != nil {
			t.Fatal(err)
		}
		refused(t, http.StatusGone, "expired", token)
		if verifiedAt(t, h, ann.ID) {
			t.Error("an expired link verified the address")
		}
		if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE email_verifications SET expires_at = now() + interval '1 day'`); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reused", func(t *testing.T) {
		if p := post(token); p.Status != http.StatusOK || !verifiedAt(t, h, ann.ID) {
			t.Fatalf("the first use: %d\n%s", p.Status, p.Body)
		}
		_, form = confirmPage(t, br, link) // refused, so the old CSRF cookie stays for the posts
		_, form2 := confirmPage(t, servertest.NewBrowser(t), h.Issuer+verify.LinkPath+"?token=x")
		if form != nil || form2 != nil {
			t.Fatal("a used link still shows its form")
		}
	})
}

// signedInAccount signs ann in to /account in br.
func signedInAccount(t *testing.T, h *servertest.Harness, br *servertest.Browser, email, pw string) servertest.Page {
	t.Helper()
	p := br.SignIn(h.Issuer+"/account", email, pw)
	servertest.WantPage(t, p, "/account", http.StatusOK, `id="change-email"`)
	return p
}

// askChange posts the change-of-address form.
func askChange(t *testing.T, h *servertest.Harness, br *servertest.Browser, email, pw string) servertest.Page {
	t.Helper()
	p := br.Get(h.Issuer + "/account/email")
	servertest.WantPage(t, p, "/account/email", http.StatusOK, `id="new-email"`)
	servertest.CheckMarkup(t, p.Body)
	return br.Post(h.Issuer+"/account/email", url.Values{"csrf_token": {p.CSRF(t)}, "email": {email}, "current_password": {pw}})
}

// TestVerify_EmailChange: a change of address on /account takes effect
// only when the link mailed to the new address is confirmed; the new
// address is then verified and signs in, the old one is told and no
// longer signs in; both steps are audited.
func TestVerify_EmailChange(t *testing.T) {
	h, smtp := withMail(t)
	rp := h.NewRP("app")
	const pw = "a long enough password 1"
	ann := h.CreateUser("ann@example.com", pw)
	br := servertest.NewBrowser(t)
	signedInAccount(t, h, br, ann.Email, pw)

	before := h.Stored(t)
	p := askChange(t, h, br, "ann@new.example.com", "not the password")
	if p.Status != http.StatusUnauthorized && p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "Your address was not changed") {
		t.Fatalf("a wrong password: %d\n%s", p.Status, p.Body)
	}
	if changed := before.Changed(h.Stored(t), "throttle_failures", "throttle"); len(changed) != 0 {
		t.Logf("tables a wrong password changed: %v", changed)
		for _, c := range changed {
			if c == "email_verifications" || c == "outbox" || c == "users" {
				t.Errorf("a wrong password changed %s", c)
			}
		}
	}

	p = askChange(t, h, br, "Ann@New.Example.com", pw)
	servertest.WantPage(t, p, "/account/email", http.StatusOK, `id="email-change-sent"`)
	if h.OwnChanges(ann.ID, verify.ActionChangeRequested) != 1 {
		t.Error("the request is not audited")
	}
	m := smtp.Wait("ann@new.example.com", 1, mailWait)
	if !strings.Contains(m.Header.Get("Subject"), "new address") {
		t.Errorf("the new address's mail: %q", m.Header.Get("Subject"))
	}
	// Nothing changes before the link is confirmed.
	if u, _ := h.Srv.Users.ByID(h.Ctx, ann.ID); u.Email != ann.Email || signsIn(t, h, "ann@new.example.com", pw) {
		t.Fatalf("before confirmation the account is at %s", u.Email)
	}

	p, form := confirmPage(t, servertest.NewBrowser(t), m.Link(t))
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, "Confirm your new address")
	if u, _ := h.Srv.Users.ByID(h.Ctx, ann.ID); u.Email != ann.Email {
		t.Fatal("opening the link moved the account")
	}
	br2 := servertest.NewBrowser(t)
	br2.Get(m.Link(t))
	p = br2.Post(h.Issuer+verify.LinkPath, url.Values{"csrf_token": {}, "token": form["token"]})
	servertest.WantPage(t, p, verify.LinkPath, http.StatusForbidden, "Nothing was changed")
	_, form = confirmPage(t, br2, m.Link(t))
	p = br2.Post(h.Issuer+verify.LinkPath, form)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, "Your account now signs in with")

	u, err := h.Srv.Users.ByID(h.Ctx, ann.ID)
	if err != nil || u.Email != "Ann@New.Example.com" || !u.EmailVerified() {
		t.Fatalf("after confirmation: %+v %v; want the new address, verified", u, err)
	}
	if h.OwnChanges(ann.ID, verify.ActionChanged) != 1 {
		t.Error("the change is not audited")
	}
	old := smtp.Wait(ann.Email, 1, mailWait)
	if !strings.Contains(old.Header.Get("Subject"), "changed") || old.Link(t) != h.Issuer+"/account" {
		t.Errorf("the old address's notice: %q, link %q", old.Header.Get("Subject"), old.Link(t))
	}
	if signsIn(t, h, ann.Email, pw) {
		t.Error("the old address still signs in")
	}
	claims, info := emailClaims(t, rp, "ann@new.example.com", pw)
	if claims["email"] != u.Email || claims["email_verified"] != true || info["email_verified"] != true {
		t.Fatalf("after the change: ID token %v, userinfo %v", claims, info)
	}
}

// TestVerify_EmailChangeTaken: asking for another account's address gets
// the same answer as a free one and changes nothing but the audit record;
// an address taken between the mail and the confirmation is refused at
// confirmation with nothing changed.
func TestVerify_EmailChangeTaken(t *testing.T) {
	h, smtp := withMail(t)
	const pw = "a long enough password 1"
	ann := h.CreateUser("ann@example.com", pw)
	bob := h.CreateUser("bob@example.com", pw)
	br := servertest.NewBrowser(t)
	signedInAccount(t, h, br, ann.Email, pw)

	answer := func(p servertest.Page, email string) string {
		t.Helper()
		if p.Status != http.StatusOK {
			t.Fatalf("status %d for %s:\n%s", p.Status, email, p.Body)
		}
		return strings.ReplaceAll(p.Body, email, "ADDRESS")
	}
	before := h.Stored(t)
	taken := answer(askChange(t, h, br, "BOB@example.com", pw), "BOB@example.com")
	if changed := before.Changed(h.Stored(t)); len(changed) != 1 || changed[0] != "audit_log" {
		t.Errorf("asking for a taken address changed %v; want the audit log only", changed)
	}
	free := answer(askChange(t, h, br, "carol@example.com", pw), "carol@example.com")
	if taken != free {
		t.Errorf("the answers differ for a taken and a free address:\n%s\n---\n%s", taken, free)
	}
	m := smtp.Wait("carol@example.com", 1, mailWait)
	waitMailDelivered(t, h)
	if n := len(smtp.To(bob.Email)); n != 0 {
		t.Errorf("%d mails to the taken address", n)
	}

	// Carol's account appears before the link is confirmed.
	h.CreateUser("carol@example.com", pw)
	cb := servertest.NewBrowser(t)
	_, form := confirmPage(t, cb, m.Link(t))
	before = h.Stored(t)
	p := cb.Post(h.Issuer+verify.LinkPath, form)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusConflict, "Nothing was changed")
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
		t.Errorf("a confirmation to a taken address changed %v", changed)
	}
	if u, _ := h.Srv.Users.ByID(h.Ctx, ann.ID); u.Email != ann.Email {
		t.Errorf("ann moved to %s", u.Email)
	}
}

// TestVerify_MailOff: without SMTP the change-of-address page says it
// cannot be done here and its form changes nothing; links lead nowhere.
func TestVerify_MailOff(t *testing.T) {
	h := servertest.New(t)
	const pw = "a long enough password 1"
	ann := h.CreateUser("ann@example.com", pw)
	br := servertest.NewBrowser(t)
	csrf := signedInAccount(t, h, br, ann.Email, pw).CSRF(t) // the session's, as the page has no form
	p := br.Get(h.Issuer + "/account/email")
	servertest.WantPage(t, p, "/account/email", http.StatusOK, "cannot send mail")
	before := h.Stored(t)
	p = br.Post(h.Issuer+"/account/email", url.Values{"csrf_token": {csrf}, "email": {"ann@new.example.com"}, "current_password": {pw}})
	servertest.WantPage(t, p, "/account/email", http.StatusNotFound, "cannot send mail")
	if changed := before.Changed(h.Stored(t)); len(changed) != 0 {
		t.Errorf("the form changed %v with mail off", changed)
	}
	servertest.WantPage(t, br.Get(h.Issuer+verify.LinkPath+"?token=x"), verify.LinkPath, http.StatusNotFound, "off here")
}
