package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// push is the client side of RFC 9126 §2.1: the authorization request's
// parameters posted to the PAR endpoint with the client's credentials
// (client_secret_basic). It returns the status and the JSON answer.
func push(t *testing.T, h *servertest.Harness, id, secret string, params url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.Issuer+"/oauth2/par", strings.NewReader(params.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("par: status %d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// pushed pushes rp's authorization request a and returns the URL the app
// sends the browser to: client_id and request_uri only.
func pushed(t *testing.T, rp *servertest.RP, a servertest.AuthRequest) string {
	t.Helper()
	status, out := push(t, rp.H, rp.ID, rp.Secret, pushParams(rp, a))
	uri, _ := out["request_uri"].(string)
	if status != http.StatusCreated || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("par: status %d %v, want 201 with a request_uri", status, out)
	}
	if exp, _ := out["expires_in"].(float64); exp != 60 {
		t.Fatalf("expires_in = %v, want 60", out["expires_in"])
	}
	return rp.H.Issuer + "/oauth2/auth?" + url.Values{"client_id": {rp.ID}, "request_uri": {uri}}.Encode()
}

func pushParams(rp *servertest.RP, a servertest.AuthRequest) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {rp.ID}, "redirect_uri": {rp.Conf.RedirectURL},
		"scope": {"openid email"}, "state": {a.State}, "nonce": {a.Nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(a.Verifier)}, "code_challenge_method": {"S256"},
	}
}

func newAuthRequest(rp *servertest.RP) servertest.AuthRequest {
	a := rp.AuthURL() // for its fresh state, nonce and verifier; its URL is not used
	a.URL = ""
	return a
}

// noRedirects fetches u without following a redirect.
func noRedirects(t *testing.T, u string) servertest.Page {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return servertest.ReadPage(t, resp)
}

// wantErrorPage: an HTML error page, no redirect to the app.
func wantErrorPage(t *testing.T, p servertest.Page) {
	t.Helper()
	if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, location %q, type %q: want a 400 HTML page and no redirect:\n%s",
			p.Status, p.Header.Get("Location"), p.Header.Get("Content-Type"), p.Body)
	}
}

func TestProvider_PushedAuthorizationRequests(t *testing.T) {
	clock := clocktest.New(time.Now())
	h := servertest.New(t, func(c *server.Config) { c.Now = clock.Now })
	h.CreateUser("alice@example.com", password)
	// Must push, and asks for consent: the request goes through a sign-in
	// and a consent page after its request_uri is consumed.
	fapi := h.NewRP("fapi", func(c *clients.Client) { c.RequirePAR = true; c.RequireConsent = true })
	other := h.NewRP("other")

	t.Run("discovery", func(t *testing.T) {
		resp, err := http.Get(h.Issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d map[string]any
		json.NewDecoder(resp.Body).Decode(&d)
		if d["pushed_authorization_request_endpoint"] != h.Issuer+"/oauth2/par" || d["require_pushed_authorization_requests"] != false {
			t.Fatalf("discovery: pushed_authorization_request_endpoint %v, require_pushed_authorization_requests %v",
				d["pushed_authorization_request_endpoint"], d["require_pushed_authorization_requests"])
		}
	})

	alice := servertest.NewBrowser(t)
	a := newAuthRequest(fapi)
	start := pushed(t, fapi, a)
	t.Run("a code flow through PAR, a sign-in and consent", func(t *testing.T) {
		p := alice.SignIn(start, "alice@example.com", password)
		form := consentForm(t, p, "allow")
		if form.Get("request_uri") == "" || form.Get("state") != "" || form.Get("redirect_uri") != "" {
			t.Fatalf("the consent form carries the request's parameters, not a request_uri: %v", form)
		}
		p = alice.Post(h.Issuer+"/oauth2/auth", form)
		if p.URL.Query().Get("iss") != h.Issuer {
			t.Fatalf("no iss in %s", p.URL)
		}
		_, _, claims := fapi.Exchange(t, fapi.Code(t, p, a), a)
		if claims["email"] != "alice@example.com" {
			t.Fatalf("ID token claims %v", claims)
		}
	})

	t.Run("a used request_uri is refused", func(t *testing.T) {
		wantErrorPage(t, noRedirects(t, start))
	})

	t.Run("another client's request_uri is refused and not consumed", func(t *testing.T) {
		b := newAuthRequest(other)
		theirs := pushed(t, other, b)
		u, _ := url.Parse(theirs)
		q := u.Query()
		q.Set("client_id", fapi.ID)
		u.RawQuery = q.Encode()
		wantErrorPage(t, noRedirects(t, u.String()))
		// The client that pushed it still can use it.
		other.Exchange(t, other.Code(t, alice.Get(theirs), b), b)
	})

	t.Run("a client that must push is refused a plain request", func(t *testing.T) {
		plain := fapi.AuthURL()
		p := alice.Get(plain.URL)
		q := p.URL.Query()
		if p.URL.Path != "/callback" || q.Get("error") != "invalid_request" || q.Get("state") != plain.State || q.Get("iss") != h.Issuer {
			t.Fatalf("got %s, want the callback with error=invalid_request, the state and iss", p.URL)
		}
		if !strings.Contains(q.Get("error_description"), "pushed authorization request") {
			t.Fatalf("error_description %q does not say why", q.Get("error_description"))
		}
		// To an unregistered redirect URI: an error page, never a redirect.
		u, _ := url.Parse(plain.URL)
		uq := u.Query()
		uq.Set("redirect_uri", "https://evil.example/callback")
		u.RawQuery = uq.Encode()
		wantErrorPage(t, noRedirects(t, u.String()))
	})

	t.Run("an expired request_uri is refused", func(t *testing.T) {
		u := pushed(t, fapi, newAuthRequest(fapi))
		// fosite dates the expiry by the wall clock, the store checks it by
		// the provider's: well past either.
		clock.Advance(2 * time.Minute)
		wantErrorPage(t, noRedirects(t, u))
	})

	t.Run("bad pushes", func(t *testing.T) {
		count := func() (n int) {
			if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM oauth_par_requests`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := count()
		params := pushParams(fapi, newAuthRequest(fapi))
		if status, out := push(t, h, fapi.ID, "wrong-secret", params); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Errorf("wrong secret: %d %v, want 401 invalid_client", status, out)
		}
		if status, out := push(t, h, other.ID, other.Secret, params); status != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("client_id of another client: %d %v, want 400 invalid_request", status, out)
		}
		withURI := pushParams(fapi, newAuthRequest(fapi))
		withURI.Set("request_uri", "urn:ietf:params:oauth:request_uri:x")
		if status, out := push(t, h, fapi.ID, fapi.Secret, withURI); status != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("request_uri in a push: %d %v, want 400 invalid_request", status, out)
		}
		bad := pushParams(fapi, newAuthRequest(fapi))
		bad.Set("redirect_uri", "https://evil.example/callback")
		if status, out := push(t, h, fapi.ID, fapi.Secret, bad); status != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("unregistered redirect_uri: %d %v, want 400 invalid_request", status, out)
		}
		if n := count() - before; n != 0 {
			t.Errorf("%d pushed requests stored from refused pushes", n)
		}
	})
}
