package server_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// TestSecretRotation_OpenForms: a form opened before the server secret was
// rotated (IDP_SECRET=new,old) can still be sent afterwards, here to an
// instance already running with the new list.
func TestSecretRotation_OpenForms(t *testing.T) {
	const oldSecret = "the-old-server-secret-0123456789-abcdef"
	const newSecret = "the-new-server-secret-0123456789-abcdef"
	h := servertest.New(t, func(c *server.Config) { c.Secret = oldSecret })
	alice := h.CreateUser("alice@example.com", password)
	br := servertest.NewBrowser(t)
	p := br.SignIn(h.URL+"/account", alice.Email, password)
	csrf := p.CSRF(t)

	rotated := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Secret = newSecret + "," + oldSecret })
	// The browser sends its session cookie to the other instance too (same
	// host); the form's token was made under the old secret.
	p = br.Post(rotated.URL+"/account/sign-out-everywhere", url.Values{"csrf_token": {csrf}, "confirm": {"yes"}})
	servertest.WantPage(t, p, "/account/sign-out-everywhere", http.StatusOK, "You are signed out")
	if liveSessions(t, h, alice) != 0 {
		t.Error("the form sent after the rotation did not sign alice out")
	}
}
