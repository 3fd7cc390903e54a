package servertest

import (
	"io"
	"net/url"
	"strings"

	"github.com/idp/idp/internal/passkey/passkeytest"
	"github.com/idp/idp/internal/server"
)

// Localhost makes the instance's issuer http://localhost:<port> instead of
// 127.0.0.1: WebAuthn has no relying party id for an IP address, so
// passkeys need a host name.
func Localhost(c *server.Config) {
	c.Issuer = strings.Replace(c.Issuer, "//127.0.0.1:", "//localhost:", 1)
}

// Authenticator returns a software authenticator whose browser is on this
// instance's origin.
func (h *Harness) Authenticator() *passkeytest.Authenticator { return passkeytest.New(h.Issuer) }

// PasskeyOptions posts form to an options endpoint as the page's script
// does and returns the JSON; it fails t on any answer but 200.
func (b *Browser) PasskeyOptions(u string, form url.Values) []byte {
	b.T.Helper()
	resp, err := b.Client.PostForm(u, form)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		b.T.Fatalf("POST %s: %d %s:\n%s", u, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return body
}

// Passkey does what passkey.js does on page p: it fetches the options
// from optionsPath with the page's CSRF token and extra fields, lets
// answer make the browser's response (auth.Create or auth.Get), and posts
// it to submitPath in the page's form. It returns the page the browser
// ends on.
func (b *Browser) Passkey(p Page, optionsPath, submitPath string, extra url.Values, answer func([]byte) ([]byte, error)) Page {
	b.T.Helper()
	base := p.URL.Scheme + "://" + p.URL.Host
	csrf := p.CSRF(b.T)
	form := url.Values{"csrf_token": {csrf}}
	for k, v := range extra {
		form[k] = v
	}
	opts := b.PasskeyOptions(base+optionsPath, form)
	resp, err := answer(opts)
	if err != nil {
		b.T.Fatalf("authenticator: %v", err)
	}
	// The form goes as the script submits it: with its other fields, the
	// password emptied (it was checked with the options).
	submit := url.Values{"csrf_token": {csrf}, "credential": {string(resp)}}
	for k, v := range extra {
		if k != "password" && k != "mediation" {
			submit[k] = v
		}
	}
	return b.Post(base+submitPath, submit)
}

// AddPasskey adds a passkey made by auth on /account, as its page's
// script does (the password first), and returns the account page the
// browser ends on, which says it is added.
func (b *Browser) AddPasskey(h *Harness, auth *passkeytest.Authenticator, password, name string) Page {
	b.T.Helper()
	p := b.Get(h.Issuer + "/account")
	if !strings.Contains(p.Body, `id="passkey-add"`) {
		b.T.Fatalf("the account page offers no passkey:\n%s", p.Body)
	}
	p = b.Passkey(p, "/account/passkeys/options", "/account/passkeys", url.Values{"password": {password}, "name": {name}}, auth.Create)
	WantPage(b.T, p, "/account", 200, "Your passkey is added")
	return p
}

// SignInWithPasskey follows start to the sign-in page and signs in with
// auth's passkey alone, and returns the page the browser ends on.
func (b *Browser) SignInWithPasskey(start string, auth *passkeytest.Authenticator) Page {
	b.T.Helper()
	p := b.Get(start)
	if !p.IsLoginForm() {
		b.T.Fatalf("expected the sign-in page, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	return b.Passkey(p, "/login/passkey/options", "/login/passkey", nil, auth.Get)
}
