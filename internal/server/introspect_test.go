package server_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// introspectCall is one request to the introspection endpoint.
type introspectCall struct {
	form url.Values
	// basic: client_secret_basic as id:secret; bearer: an Authorization
	// bearer token instead.
	basicID, basicSecret, bearer string
}

func introspect(t *testing.T, h *servertest.Harness, c introspectCall) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.Issuer+"/oauth2/introspect", strings.NewReader(c.form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.basicID != "" {
		req.SetBasicAuth(url.QueryEscape(c.basicID), url.QueryEscape(c.basicSecret))
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("introspect: status %d, not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, out
}

// TestIntrospection_OnlyForThoseEntitled: a token is active only to its
// own client and, for an access token, to a resource server named in its
// audience; the owner's email goes to the token's own client only; every
// caller authenticates as a confidential client (basic or post), and a
// bearer token, a public client or no credentials get invalid_client.
func TestIntrospection_OnlyForThoseEntitled(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	appA := h.NewRP("app-a", func(c *clients.Client) { c.Audience = []string{"api"} })
	appB := h.NewRP("app-b")
	api := h.NewRP("api", func(c *clients.Client) {
		c.GrantTypes, c.RedirectURIs, c.PostLogoutRedirectURIs = []string{"client_credentials"}, nil, nil
	})
	spa := h.NewRP("spa", func(c *clients.Client) { c.Public, c.GrantTypes = true, []string{"authorization_code"} })

	a := appA.AuthURL(oauth2.SetAuthURLParam("audience", "api"))
	br := servertest.NewBrowser(t)
	tok, _, _ := appA.Exchange(t, appA.Code(t, br.SignIn(a.URL, "alice@example.com", password), a), a)
	if tok.RefreshToken == "" {
		t.Fatal("app A got no refresh token to introspect")
	}
	bToken, err := (&clientcredentials.Config{ClientID: appB.ID, ClientSecret: appB.Secret,
		TokenURL: h.Issuer + "/oauth2/token"}).Token(h.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	access := url.Values{"token": {tok.AccessToken}}
	refresh := url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}
	asPost := func(rp *servertest.RP, form url.Values) url.Values {
		f := maps.Clone(form)
		f.Set("client_id", rp.ID)
		f.Set("client_secret", rp.Secret)
		return f
	}

	for _, tc := range []struct {
		name string
		call introspectCall
		// status 200 answers active (and, if active, with username or not);
		// others answer the OAuth error.
		status       int
		active       bool
		username     bool
		errorCode    string
		onlyInactive bool // the answer says nothing but "active": false
	}{
		{name: "own client, basic", call: introspectCall{form: access, basicID: appA.ID, basicSecret: appA.Secret},
			status: 200, active: true, username: true},
		{name: "own client, client_secret_post", call: introspectCall{form: asPost(appA, access)},
			status: 200, active: true, username: true},
		{name: "own client, refresh token", call: introspectCall{form: refresh, basicID: appA.ID, basicSecret: appA.Secret},
			status: 200, active: true, username: true},
		{name: "resource server in the audience", call: introspectCall{form: access, basicID: api.ID, basicSecret: api.Secret},
			status: 200, active: true},
		{name: "resource server, refresh token", call: introspectCall{form: refresh, basicID: api.ID, basicSecret: api.Secret},
			status: 200, onlyInactive: true},
		{name: "another app", call: introspectCall{form: access, basicID: appB.ID, basicSecret: appB.Secret},
			status: 200, onlyInactive: true},
		{name: "another app, client_secret_post", call: introspectCall{form: asPost(appB, access)},
			status: 200, onlyInactive: true},
		{name: "unknown token", call: introspectCall{form: url.Values{"token": {"nope"}}, basicID: appA.ID, basicSecret: appA.Secret},
			status: 200, onlyInactive: true},
		{name: "a bearer token instead of client credentials", call: introspectCall{form: access, bearer: bToken.AccessToken},
			status: 401, errorCode: "invalid_client"},
		{name: "no client authentication", call: introspectCall{form: access},
			status: 401, errorCode: "invalid_client"},
		{name: "wrong secret", call: introspectCall{form: access, basicID: appA.ID, basicSecret: "wrong"},
			status: 401, errorCode: "invalid_client"},
		{name: "public client", call: introspectCall{form: url.Values{"token": {tok.AccessToken}, "client_id": {spa.ID}}},
			status: 401, errorCode: "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, header, got := introspect(t, h, tc.call)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, got)
			}
			if tc.errorCode != "" {
				if got["error"] != tc.errorCode || header.Get("WWW-Authenticate") == "" {
					t.Errorf("answer %v (WWW-Authenticate %q), want error %s with a challenge",
						got, header.Get("WWW-Authenticate"), tc.errorCode)
				}
				return
			}
			if tc.onlyInactive {
				if len(got) != 1 || got["active"] != false {
					t.Errorf("answer %v, want only active: false", got)
				}
				return
			}
			if got["active"] != tc.active || got["sub"] != alice.ID || got["client_id"] != appA.ID {
				t.Errorf("answer %v, want active %v about alice's token of app A", got, tc.active)
			}
			if name, ok := got["username"]; ok != tc.username || (ok && name != "alice@example.com") {
				t.Errorf("username %v (present %v), want present %v", name, ok, tc.username)
			}
		})
	}

	t.Run("discovery names what is accepted", func(t *testing.T) {
		var d struct {
			Methods []string `json:"introspection_endpoint_auth_methods_supported"`
		}
		resp, err := http.Get(h.Issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&d)
		if !slices.Equal(d.Methods, []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}) {
			t.Errorf("introspection_endpoint_auth_methods_supported = %v", d.Methods)
		}
	})
}
