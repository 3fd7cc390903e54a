package server_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// consentForm reads the consent page's form, as a browser would submit it.
func consentForm(t *testing.T, p servertest.Page, decision string) url.Values {
	t.Helper()
	if !strings.Contains(p.Body, `id="consent-allow"`) {
		t.Fatalf("expected the consent page, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	form := url.Values{"consent_decision": {decision}}
	for _, m := range hiddenRe.FindAllStringSubmatch(p.Body, -1) {
		form.Add(m[1], html.UnescapeString(m[2]))
	}
	return form
}

func TestConsent(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("asks", func(c *clients.Client) { c.RequireConsent = true })
	alice := servertest.NewBrowser(t)

	a := app.AuthURL()
	p := alice.SignIn(a.URL, "alice@example.com", password)
	if !strings.Contains(p.Body, "See your email address") {
		t.Fatalf("consent page does not say what is asked:\n%s", p.Body)
	}

	t.Run("forged decision", func(t *testing.T) {
		form := consentForm(t, p, "allow")
		form.Set("csrf_token", "forged")
		if got := alice.Post(h.Issuer+"/oauth2/auth", form); got.Status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", got.Status)
		}
	})

	t.Run("deny tells the app", func(t *testing.T) {
		got := alice.Post(h.Issuer+"/oauth2/auth", consentForm(t, p, "deny"))
		if got.URL.Path != "/callback" || got.URL.Query().Get("error") != "access_denied" || got.URL.Query().Get("state") != a.State {
			t.Fatalf("after deny: %s", got.URL)
		}
	})

	t.Run("prompt=none without consent", func(t *testing.T) {
		b := app.AuthURL(oauth2.SetAuthURLParam("prompt", "none"))
		if got := alice.Get(b.URL); got.URL.Query().Get("error") != "consent_required" {
			t.Fatalf("got %s, want consent_required", got.URL)
		}
	})

	// Allow: the code arrives, and next time no page is shown.
	a = app.AuthURL()
	p = alice.Get(a.URL)
	app.Exchange(t, app.Code(t, alice.Post(h.Issuer+"/oauth2/auth", consentForm(t, p, "allow")), a), a)
	b := app.AuthURL()
	app.Code(t, alice.Get(b.URL), b)

	t.Run("a new scope asks again", func(t *testing.T) {
		c := app.AuthURL(oauth2.SetAuthURLParam("scope", "openid email offline_access"))
		consentForm(t, alice.Get(c.URL), "allow")
	})
}
