package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// TestProvider_IssuerInAuthorizationResponses: every response to the
// redirect URI names the provider (RFC 9207), success and errors alike,
// and discovery says so.
func TestProvider_IssuerInAuthorizationResponses(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	asks := h.NewRP("asks", func(c *clients.Client) { c.RequireConsent = true })
	alice := servertest.NewBrowser(t)

	wantIss := func(t *testing.T, p servertest.Page, wantErr string) {
		t.Helper()
		q := p.URL.Query()
		if p.URL.Path != "/callback" || q.Get("error") != wantErr {
			t.Fatalf("got %s (%d), want the callback with error=%q", p.URL, p.Status, wantErr)
		}
		if got := q["iss"]; len(got) != 1 || got[0] != h.Issuer {
			t.Fatalf("iss = %q, want [%q] in %s", got, h.Issuer, p.URL)
		}
	}

	t.Run("success", func(t *testing.T) {
		a := app.AuthURL()
		p := alice.SignIn(a.URL, "alice@example.com", password)
		wantIss(t, p, "")
		app.Exchange(t, app.Code(t, p, a), a)
	})
	t.Run("access_denied", func(t *testing.T) {
		a := asks.AuthURL()
		p := alice.Get(a.URL)
		wantIss(t, alice.Post(h.Issuer+"/oauth2/auth", consentForm(t, p, "deny")), "access_denied")
	})
	t.Run("invalid_scope (fosite's own error)", func(t *testing.T) {
		a := app.AuthURL(oauth2.SetAuthURLParam("scope", "openid not-registered"))
		wantIss(t, alice.Get(a.URL), "invalid_scope")
	})
	t.Run("login_required", func(t *testing.T) {
		a := app.AuthURL(oauth2.SetAuthURLParam("prompt", "none"))
		wantIss(t, servertest.NewBrowser(t).Get(a.URL), "login_required")
	})
	t.Run("discovery", func(t *testing.T) {
		resp, err := http.Get(h.Issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		if d["authorization_response_iss_parameter_supported"] != true {
			t.Fatalf("authorization_response_iss_parameter_supported = %v, want true", d["authorization_response_iss_parameter_supported"])
		}
	})
}
