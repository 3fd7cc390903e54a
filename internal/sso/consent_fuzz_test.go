package sso_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// FuzzConsent posts arbitrary bodies to the authorization endpoint from a
// signed-in browser, as the consent page does ({request} is a fresh
// authorization request of an app that asks for consent, {csrf} the
// session's token). No 5xx. A code is issued only for a decision "allow"
// with the session's token (consent is forgotten between inputs); a
// refusal (an error page, the consent page again, or an error sent to
// the app) stores nothing; sending the person to sign in stores only the
// sign-in.
func FuzzConsent(f *testing.F) {
	for _, body := range []string{
		"{request}&csrf_token={csrf}&consent_decision=allow",
		"{request}&csrf_token={csrf}&consent_decision=deny",
		"{request}&csrf_token={csrf}",
		"{request}&csrf_token=forged&consent_decision=allow",
		"{request}&consent_decision=allow",
		"{request}&csrf_token={csrf}&consent_decision=Allow",
		"{request}&csrf_token={csrf}&consent_decision=allow&consent_decision=deny",
		"{request}&csrf_token={csrf}&consent_decision=allow&prompt=none",
		"{request}&csrf_token={csrf}&consent_decision=allow&prompt=login",
		"{request}&csrf_token={csrf}&consent_decision=allow&scope=openid+offline_access",
		"{request}&csrf_token={csrf}&consent_decision=allow&redirect_uri=http%3A%2F%2Fevil.example%2Fcb",
		"client_id=asks&csrf_token={csrf}&consent_decision=allow",
		"{request}&csrf_token={csrf}&consent_decision=allow&state=%00",
	} {
		f.Add(body)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	app := h.NewRP("asks", func(c *clients.Client) { c.RequireConsent = true })
	user := h.CreateUser("bob@example.com", "correct horse battery staple")
	_, cookie := h.Session(f, user.ID, sessions.ACRPassword, sessions.AMRPassword)
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", cookie)
	csrf := h.Srv.Sessions.CSRFToken(r)
	callback := app.Conf.RedirectURL
	f.Fuzz(func(t *testing.T, body string) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `DELETE FROM consents`); err != nil {
			t.Fatal(err)
		}
		request, _ := url.Parse(app.AuthURL().URL)
		body = strings.ReplaceAll(body, "{request}", request.RawQuery)
		body = strings.ReplaceAll(body, "{csrf}", url.QueryEscape(csrf))
		req, _ := http.NewRequest("POST", h.URL+"/oauth2/auth", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", cookie)
		before := h.Stored(t)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d:\n%.500s", resp.StatusCode, b)
		}
		changed := before.Changed(h.Stored(t), "throttle")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		switch {
		case loc != nil && strings.HasPrefix(loc.String(), callback) && loc.Query().Get("code") != "":
			form, _ := url.ParseQuery(body)
			if form.Get("consent_decision") != "allow" || form.Get("csrf_token") != csrf {
				t.Fatalf("a code was issued for decision %q with csrf_token %q", form.Get("consent_decision"), form.Get("csrf_token"))
			}
		case loc != nil && loc.Host == "" && strings.HasPrefix(loc.Path, "/login"):
			if len(changed) > 1 || len(changed) == 1 && changed[0] != "login_flows" {
				t.Fatalf("sent to sign in (%s), yet %v changed", loc, changed)
			}
		case len(changed) > 0:
			t.Fatalf("refused with %d (to %q), yet %v changed:\n%.300s", resp.StatusCode, resp.Header.Get("Location"), changed, b)
		}
	})
}
