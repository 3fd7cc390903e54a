package server_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/passkey/passkeytest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

var passkeyIDRe = regexp.MustCompile(`id="passkey-([0-9a-f-]{36})"`)

// claimsOf exchanges the code on page p and returns the ID token's claims
// as go-oidc verified them.
func claimsOf(t *testing.T, rp *servertest.RP, p servertest.Page, a servertest.AuthRequest) (amr []string, acr, sid string) {
	t.Helper()
	_, idt, claims := rp.Exchange(t, rp.Code(t, p, a), a)
	var c struct {
		AMR []string `json:"amr"`
		ACR string   `json:"acr"`
		SID string   `json:"sid"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.SID == "" || claims["auth_time"] == nil {
		t.Fatalf("ID token without sid or auth_time: %v", claims)
	}
	return c.AMR, c.ACR, c.SID
}

// TestPasskey_EndToEnd is the passkey story over HTTP with go-oidc as the
// apps: a person signed in with a password adds a passkey on /account;
// an app asking for acr urn:idp:acr:phr steps the session up with it;
// another browser signs in with the passkey alone (no password, no code)
// to App A and then to App B without a prompt; a password sign-in now asks
// for the passkey as second factor; removing the passkey ends the other
// sessions and both apps are told.
const passkeyEmail = "ada@example.com"

func TestPasskey_EndToEnd(t *testing.T) {
	h := servertest.New(t, servertest.Localhost)
	u := h.CreateUser(passkeyEmail, password)
	appA, appB, recvA, recvB := twoApps(h)
	auth := h.Authenticator()

	// Discovery lists the acr values, the phishing-resistant one among them.
	disc, err := oidc.NewProvider(h.Ctx, h.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		ACRs []string `json:"acr_values_supported"`
	}
	disc.Claims(&meta)
	if !slices.Equal(meta.ACRs, []string{sessions.ACRPassword, sessions.ACRMFA, sessions.ACRPhishingResistant}) {
		t.Errorf("acr_values_supported = %v", meta.ACRs)
	}

	// A password-only session at App A, then a passkey on /account.
	br := servertest.NewBrowser(t)
	a := appA.AuthURL()
	_, acr, sid := claimsOf(t, appA, br.SignIn(a.URL, passkeyEmail, password), a)
	if acr != sessions.ACRPassword {
		t.Fatalf("password sign-in: acr %q", acr)
	}
	page := br.AddPasskey(h, auth, password, "")
	servertest.CheckMarkup(t, page.Body)
	if !strings.Contains(page.Body, `class="passkey-name">Go-http-client<`) {
		t.Errorf("the new passkey is not named after the browser:\n%s", page.Body)
	}
	if n := h.OwnChanges(u.ID, audit.ActionAddPasskey); n != 1 {
		t.Errorf("%d passkey.add audit entries, want 1", n)
	}
	if !strings.Contains(page.Body, `data-action="passkey.add">You added a passkey`) {
		t.Errorf("recent changes do not show the new passkey:\n%s", page.Body)
	}

	// Step-up: App A asks for a phishing-resistant sign-in; the person
	// gives their passkey (codes are not offered), the sid stays.
	a = appA.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRPhishingResistant))
	p := br.Get(a.URL)
	servertest.WantPage(t, p, "/login/totp", http.StatusOK, "Use your passkey")
	servertest.CheckMarkup(t, p.Body)
	if strings.Contains(p.Body, `action="/login/totp"`) {
		t.Errorf("the passkey step-up offers a code form:\n%s", p.Body)
	}
	p = br.Passkey(p, "/login/totp/passkey/options", "/login/totp/passkey", nil, auth.Get)
	amr, acr, stepped := claimsOf(t, appA, p, a)
	if acr != sessions.ACRPhishingResistant || !slices.Equal(amr, []string{"pwd", "hwk", "pin", "mfa"}) || stepped != sid {
		t.Errorf("after the step-up: amr %v, acr %q, sid %s (was %s); want pwd hwk pin mfa, phr, the same sid", amr, acr, stepped, sid)
	}

	// Another browser: the passkey alone, from the sign-in page's autofill.
	br2 := servertest.NewBrowser(t)
	a = appA.AuthURL()
	p = br2.Get(a.URL)
	servertest.CheckMarkup(t, p.Body)
	for _, want := range []string{`autocomplete="username webauthn"`, `Sign in with a passkey`, `src="/static/passkey.js"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the sign-in page lacks %s", want)
		}
	}
	p = br2.Passkey(p, "/login/passkey/options", "/login/passkey", url.Values{"mediation": {"conditional"}}, auth.Get)
	amr, acr, sid2 := claimsOf(t, appA, p, a)
	if acr != sessions.ACRPhishingResistant || !slices.Equal(amr, []string{"hwk", "pin", "mfa"}) {
		t.Errorf("passwordless sign-in: amr %v, acr %q; want hwk pin mfa and phr", amr, acr)
	}
	b := appB.AuthURL()
	if _, _, sidB := claimsOf(t, appB, br2.Get(b.URL), b); sidB != sid2 {
		t.Errorf("App B is in session %s, App A in %s: want single sign-on", sidB, sid2)
	}
	// "Keep me signed in" is the person's choice with a passkey too: off
	// unless ticked.
	if got, err := h.Srv.Sessions.Get(h.Ctx, sid2); err != nil || got.Remember {
		t.Errorf("a passkey sign-in without the box ticked: remember %v (%v), want false", got.Remember, err)
	}
	br4 := servertest.NewBrowser(t)
	a = appA.AuthURL()
	p = br4.Passkey(br4.Get(a.URL), "/login/passkey/options", "/login/passkey", url.Values{"remember": {"1"}}, auth.Get)
	_, _, sid4 := claimsOf(t, appA, p, a)
	if got, err := h.Srv.Sessions.Get(h.Ctx, sid4); err != nil || !got.Remember {
		t.Errorf("a passkey sign-in with the box ticked: remember %v (%v), want true", got.Remember, err)
	}

	// A password sign-in now asks for the passkey.
	br3 := servertest.NewBrowser(t)
	p = br3.SignIn(appA.AuthURL().URL, passkeyEmail, password)
	servertest.WantPage(t, p, "/login/totp", http.StatusOK, "Use your passkey")

	// Removing the passkey from the first browser ends the second's
	// session; both of its apps are told.
	page = br.Get(h.Issuer + "/account")
	m := passkeyIDRe.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no passkey listed:\n%s", page.Body)
	}
	p = br.Post(h.Issuer+"/account/passkeys/"+m[1]+"/remove", url.Values{"csrf_token": {page.CSRF(t)}, "password": {password}})
	servertest.WantPage(t, p, "/account", http.StatusOK, "The passkey is removed")
	// App A held the two passwordless sessions, App B the first.
	for recv, n := range map[*servertest.Receiver]int{recvA: 2, recvB: 1} {
		var sids []string
		for _, tok := range recv.WaitFor(t, n) {
			sids = append(sids, tok.SID)
		}
		if !slices.Contains(sids, sid2) || slices.Contains(sids, sid) {
			t.Errorf("logout tokens for %v; want the passwordless session %s, not the one that removed the passkey", sids, sid2)
		}
	}
	if n := h.OwnChanges(u.ID, audit.ActionRemovePasskey); n != 1 {
		t.Errorf("%d passkey.remove audit entries, want 1", n)
	}
	// The first browser's session stays; the second is signed out.
	if p := br.Get(h.Issuer + "/account"); p.URL.Path != "/account" {
		t.Errorf("the session that removed the passkey ended: %s", p.URL)
	}
	if p := br2.Get(h.Issuer + "/account"); p.URL.Path == "/account" {
		t.Error("the passwordless session outlived the removal of its passkey")
	}
}

// TestPasskey_ForcedEnrollment: with 2FA required, a person without a
// second factor may set up a passkey instead of an app; the sign-in then
// completes with two factors. Removing that last factor is refused; with a
// passkey, the app's codes may go.
func TestPasskey_ForcedEnrollment(t *testing.T) {
	h := servertest.New(t, servertest.Localhost, func(c *server.Config) { c.RequireMFA = true })
	u := h.CreateUser(passkeyEmail, password)
	app := h.NewRP("app")
	auth := h.Authenticator()
	br := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := br.SignIn(a.URL, passkeyEmail, password)
	servertest.WantPage(t, p, "/login/enroll", http.StatusOK, "Set up a passkey")
	servertest.CheckMarkup(t, p.Body)
	p = br.Passkey(p, "/login/enroll/passkey/options", "/login/enroll/passkey", nil, auth.Create)
	amr, acr, _ := claimsOf(t, app, p, a)
	if acr != sessions.ACRMFA || !slices.Equal(amr, []string{"pwd", "hwk", "pin", "mfa"}) {
		t.Errorf("after enrolling a passkey: amr %v, acr %q; want pwd hwk pin mfa and two-factor", amr, acr)
	}
	if n := h.OwnChanges(u.ID, audit.ActionAddPasskey); n != 1 {
		t.Errorf("%d passkey.add audit entries, want 1", n)
	}

	page := br.Get(h.Issuer + "/account")
	m := passkeyIDRe.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no passkey listed:\n%s", page.Body)
	}
	p = br.Post(h.Issuer+"/account/passkeys/"+m[1]+"/remove", url.Values{"csrf_token": {page.CSRF(t)}, "password": {password}})
	servertest.WantPage(t, p, "/account/passkeys/"+m[1]+"/remove", http.StatusForbidden, "This is your only second factor")
	if on, _ := h.Srv.Passkeys.Registered(h.Ctx, u.ID); !on {
		t.Fatal("the refused removal removed the passkey")
	}
	if n := h.OwnChanges(u.ID, audit.ActionRemovePasskey); n != 0 {
		t.Errorf("a refused removal is in the audit log %d times", n)
	}
	// The account page does not call 2FA off, and offers the app as a second way.
	if !strings.Contains(p.Body, "On, with your passkey.") {
		t.Errorf("the account page does not say the passkey is the second factor:\n%s", p.Body)
	}
}

// TestPasskey_Refusals: what a person can get wrong, over HTTP, each with
// a clear page and no session.
func TestPasskey_Refusals(t *testing.T) {
	h := servertest.New(t, servertest.Localhost)
	ada := h.CreateUser(passkeyEmail, password)
	h.CreateUser("eve@example.com", password)
	app := h.NewRP("app")
	adaKey, eveKey := h.Authenticator(), h.Authenticator()
	adaBrowser := servertest.NewBrowser(t)
	adaBrowser.SignIn(app.AuthURL().URL, passkeyEmail, password)
	adaBrowser.AddPasskey(h, adaKey, password, "")
	eveBrowser := servertest.NewBrowser(t)
	eveBrowser.SignIn(app.AuthURL().URL, "eve@example.com", password)
	eveBrowser.AddPasskey(h, eveKey, password, "")

	noSession := func(t *testing.T, br *servertest.Browser) {
		t.Helper()
		if p := br.Get(app.AuthURL().URL); !p.IsLoginForm() && p.URL.Path != "/login/totp" {
			t.Errorf("the refused sign-in left a session: %s", p.URL)
		}
	}

	t.Run("second factor with another person's passkey", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		p := br.SignIn(app.AuthURL().URL, passkeyEmail, password)
		servertest.WantPage(t, p, "/login/totp", http.StatusOK, "Use your passkey")
		p = br.Passkey(p, "/login/totp/passkey/options", "/login/totp/passkey", nil, func(opts []byte) ([]byte, error) {
			return eveKey.GetWith(opts, passkeytest.Tamper{Credential: eveKey.Credentials()[0]})
		})
		servertest.WantPage(t, p, "/login/totp/passkey", http.StatusUnauthorized, "That passkey belongs to another account")
		if !strings.Contains(p.Body, "Use your passkey") {
			t.Error("the refusal does not offer the passkey again")
		}
		failures := dbtest.Value[int](t, h.DB.Pool, `SELECT max(mfa_failures) FROM login_flows`)
		if failures != 1 {
			t.Errorf("the flow counts %d wrong second factors, want 1", failures)
		}
	})
	t.Run("passwordless from another site", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		p := br.Get(app.AuthURL().URL)
		p = br.Passkey(p, "/login/passkey/options", "/login/passkey", nil, func(opts []byte) ([]byte, error) {
			return adaKey.GetWith(opts, passkeytest.Tamper{Origin: "https://login.example.com.evil.test"})
		})
		servertest.WantPage(t, p, "/login/passkey", http.StatusUnauthorized, "made for another website")
		noSession(t, br)
	})
	t.Run("replayed answer", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		p := br.Get(app.AuthURL().URL)
		csrf := p.CSRF(t)
		opts := br.PasskeyOptions(h.Issuer+"/login/passkey/options", url.Values{"csrf_token": {csrf}})
		answer, err := adaKey.Get(opts)
		if err != nil {
			t.Fatal(err)
		}
		attacker := servertest.NewBrowser(t)
		ap := attacker.Get(app.AuthURL().URL)
		ap = attacker.Post(h.Issuer+"/login/passkey", url.Values{"csrf_token": {ap.CSRF(t)}, "credential": {string(answer)}})
		servertest.WantPage(t, ap, "/login/passkey", http.StatusBadRequest, "no longer valid")
		noSession(t, attacker)
		// The challenge was spent by the attacker's try: the person's own
		// answer is refused too, and they try again.
		p = br.Post(h.Issuer+"/login/passkey", url.Values{"csrf_token": {csrf}, "credential": {string(answer)}})
		servertest.WantPage(t, p, "/login/passkey", http.StatusBadRequest, "no longer valid")
	})
	t.Run("no answer (no JavaScript)", func(t *testing.T) {
		p := adaBrowser.Get(h.Issuer + "/account")
		p = adaBrowser.Post(h.Issuer+"/account/passkeys", url.Values{"csrf_token": {p.CSRF(t)}})
		servertest.WantPage(t, p, "/account/passkeys", http.StatusBadRequest, "Adding one needs JavaScript")
	})
	t.Run("add with a wrong password", func(t *testing.T) {
		p := adaBrowser.Get(h.Issuer + "/account")
		resp, err := adaBrowser.Client.PostForm(h.Issuer+"/account/passkeys/options", url.Values{"csrf_token": {p.CSRF(t)}, "password": {"wrong"}})
		if err != nil {
			t.Fatal(err)
		}
		p = servertest.ReadPage(t, resp)
		if p.Status != http.StatusUnauthorized || !strings.Contains(p.Body, `"error":"That password is not right.`) {
			t.Errorf("options with a wrong password: %d %s", p.Status, p.Body)
		}
	})
	t.Run("disabled account", func(t *testing.T) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE users SET disabled_at = now() WHERE id = $1`, ada.ID); err != nil {
			t.Fatal(err)
		}
		defer h.DB.Pool.Exec(h.Ctx, `UPDATE users SET disabled_at = NULL WHERE id = $1`, ada.ID)
		br := servertest.NewBrowser(t)
		p := br.SignInWithPasskey(app.AuthURL().URL, adaKey)
		servertest.WantPage(t, p, "/login/passkey", http.StatusForbidden, "This account is disabled")
		noSession(t, br)
	})
	t.Run("step-up to a passkey without one", func(t *testing.T) {
		carol := servertest.NewBrowser(t)
		h.CreateUser("carol@example.com", password)
		carol.SignIn(app.AuthURL().URL, "carol@example.com", password)
		p := carol.Get(app.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRPhishingResistant)).URL)
		servertest.WantPage(t, p, "/oauth2/auth", http.StatusForbidden, "your account has none yet")
	})
}
