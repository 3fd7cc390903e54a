package server_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// formAction is the form-action directive of a page's policy.
func formAction(t *testing.T, p servertest.Page) string {
	t.Helper()
	for _, d := range strings.Split(p.Header.Get("Content-Security-Policy"), ";") {
		if d = strings.TrimSpace(d); strings.HasPrefix(d, "form-action ") {
			return d
		}
	}
	t.Fatalf("%s has no form-action in %q", p.URL, p.Header.Get("Content-Security-Policy"))
	return ""
}

func origin(raw string) string {
	u, _ := url.Parse(raw)
	return u.Scheme + "://" + u.Host
}

// TestCSP_FormAction: a page's forms may lead only where that page needs:
// a sign-in's pages (and the consent page) to this server and the app's
// redirect URIs, the sign-out confirmation to the app's post-logout
// address, every other page nowhere but this server.
func TestCSP_FormAction(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	asks := h.NewRP("asks", func(c *clients.Client) { c.RequireConsent = true })
	br := servertest.NewBrowser(t)

	login := br.Get(app.AuthURL().URL)
	if !login.IsLoginForm() {
		t.Fatalf("want the sign-in form, got %s", login.URL)
	}
	consent := br.SignIn(asks.AuthURL().URL, "alice@example.com", password)
	logout := br.Get(h.Issuer + "/oauth2/sessions/logout?" + url.Values{"client_id": {app.ID},
		"post_logout_redirect_uri": {app.Callback.URL + "/logged-out"}}.Encode())

	for _, tc := range []struct {
		name string
		page servertest.Page
		want string
	}{
		{"sign-in for an app", login, "form-action 'self' " + origin(app.Conf.RedirectURL)},
		{"consent", consent, "form-action 'self' " + origin(asks.Conf.RedirectURL)},
		{"sign-out confirmation", logout, "form-action 'self' " + origin(app.Callback.URL)},
		{"account", br.Get(h.Issuer + "/account"), "form-action 'self'"},
		{"sign-in for the account page", servertest.NewBrowser(t).Get(h.Issuer + "/account"), "form-action 'self'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formAction(t, tc.page); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.page.URL.Path, got, tc.want)
			}
		})
	}
}
