package server_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// resourceServer is what a resource server does with a JWT access token
// (RFC 9068 §4), written from the RFC: the header's typ is at+jwt, the
// signature verifies with a key of the provider's JWKS (fetched over
// HTTP), iss is the provider, aud names this resource server, exp lies
// ahead.
type atClaims struct {
	jwt.Claims
	ClientID string            `json:"client_id"`
	Scope    string            `json:"scope"`
	SID      string            `json:"sid"`
	AuthTime int64             `json:"auth_time"`
	ACR      string            `json:"acr"`
	AMR      []string          `json:"amr"`
	CNF      map[string]string `json:"cnf"`
}

func verifyAccessToken(t *testing.T, h *servertest.Harness, token, resource string) atClaims {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("access token is not a signed JWT: %v", err)
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Fatalf("typ = %v, want at+jwt", typ)
	}
	var set jose.JSONWebKeySet
	getJSON(t, h.Issuer+"/.well-known/jwks.json", &set)
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS", tok.Headers[0].KeyID)
	}
	var c atClaims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := c.Validate(jwt.Expected{Issuer: h.Issuer, AnyAudience: jwt.Audience{resource}, Time: time.Now()}); err != nil {
		t.Fatalf("claims %+v: %v", c, err)
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" || c.Subject == "" {
		t.Fatalf("exp, iat, jti or sub missing: %+v", c)
	}
	return c
}

// TestJWTAccessTokens: a client registered with the jwt format gets JWT
// access tokens (RFC 9068) a resource server verifies against the JWKS,
// with aud the resource asked for (RFC 8707); a resource the client may
// not ask for is invalid_target at both endpoints; the token is stored
// like an opaque one, so introspection answers for it and a revoke-all
// kills it; an opaque-format client is unchanged.
func TestJWTAccessTokens(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	const api, reports = "https://api.example.com/", "https://reports.example.com/v1"
	app := h.NewRP("jwt-app", func(c *clients.Client) {
		c.AccessTokenFormat = clients.AccessTokenJWT
		c.Audience = []string{api, reports}
	})
	br := servertest.NewBrowser(t)
	a := app.AuthURL(oauth2.SetAuthURLParam("resource", api))
	tok, _, idClaims := app.Exchange(t, app.Code(t, br.SignIn(a.URL, "alice@example.com", password), a), a)

	c := verifyAccessToken(t, h, tok.AccessToken, api)
	if c.Subject != alice.ID || c.ClientID != "jwt-app" || !slices.Equal(c.Audience, jwt.Audience{api}) {
		t.Errorf("sub %q client_id %q aud %v, want %s jwt-app [%s]", c.Subject, c.ClientID, c.Audience, alice.ID, api)
	}
	if c.SID == "" || c.SID != idClaims["sid"] {
		t.Errorf("sid %q, want the ID token's %v", c.SID, idClaims["sid"])
	}
	if !strings.Contains(c.Scope, "openid") || c.AuthTime == 0 || c.ACR == "" || len(c.AMR) == 0 {
		t.Errorf("scope, auth_time, acr or amr missing: %+v", c)
	}
	if in := app.Introspect(t, tok.AccessToken); in["active"] != true || in["client_id"] != "jwt-app" {
		t.Fatalf("introspection of a JWT access token: %v", in)
	}
	if status, _, out := userinfo(t, h, "GET", "Bearer "+tok.AccessToken, ""); status != http.StatusOK || out["sub"] != alice.ID {
		t.Fatalf("userinfo with a JWT access token: %d %v", status, out)
	}

	t.Run("token request narrows aud", func(t *testing.T) {
		a := app.AuthURL(oauth2.SetAuthURLParam("resource", api))
		a.URL += "&resource=" + url.QueryEscape(reports)
		code := app.Code(t, br.Get(a.URL), a)
		tok, err := app.Conf.Exchange(h.Ctx, code, oauth2.VerifierOption(a.Verifier), oauth2.SetAuthURLParam("resource", reports))
		if err != nil {
			t.Fatal(err)
		}
		if c := verifyAccessToken(t, h, tok.AccessToken, reports); !slices.Equal(c.Audience, jwt.Audience{reports}) {
			t.Errorf("aud %v, want [%s]", c.Audience, reports)
		}
	})
	t.Run("no resource: the registered audience", func(t *testing.T) {
		a := app.AuthURL()
		tok, _, _ := app.Exchange(t, app.Code(t, br.Get(a.URL), a), a)
		if c := verifyAccessToken(t, h, tok.AccessToken, api); !slices.Equal(c.Audience, jwt.Audience{api, reports}) {
			t.Errorf("aud %v, want the registered audience", c.Audience)
		}
	})

	t.Run("invalid_target", func(t *testing.T) {
		for name, res := range map[string]string{
			"unregistered":  "https://evil.example.com/",
			"fragment":      api + "#x",
			"not absolute":  "/api",
			"a client's id": "jwt-app",
		} {
			t.Run("authorize "+name, func(t *testing.T) {
				before := h.Stored(t)
				a := app.AuthURL(oauth2.SetAuthURLParam("resource", res))
				p := br.Get(a.URL)
				if p.URL.Path != "/callback" || p.URL.Query().Get("error") != "invalid_target" {
					t.Fatalf("%s: %s", res, p.URL)
				}
				if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
					t.Errorf("a refused authorization stored %v", changed)
				}
			})
		}
		svc := h.NewRP("jwt-svc", func(c *clients.Client) {
			c.GrantTypes, c.Scopes, c.Audience = []string{"client_credentials"}, []string{"read"}, []string{api}
			c.AccessTokenFormat = clients.AccessTokenJWT
		})
		cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "resource": {reports}}
		if status, out := tokenRequest(t, h, "jwt-svc", svc.Secret, "", cc); status != http.StatusBadRequest || out["error"] != "invalid_target" {
			t.Fatalf("client_credentials for an unregistered resource: %d %v", status, out)
		}
		cc.Set("resource", api)
		status, out := tokenRequest(t, h, "jwt-svc", svc.Secret, "", cc)
		if status != http.StatusOK {
			t.Fatalf("client_credentials for its resource: %d %v", status, out)
		}
		at := out["access_token"].(string)
		if c := verifyAccessToken(t, h, at, api); c.Subject != "jwt-svc" || c.SID != "" {
			t.Errorf("client_credentials token: sub %q sid %q, want the client and no sid", c.Subject, c.SID)
		}
		if in := svc.Introspect(t, at); in["active"] != true || in["aud"].([]any)[0] != api {
			t.Fatalf("introspection of a client_credentials JWT: %v", in)
		}
		// RFC 7009 revocation finds a JWT by its signature, as an opaque token.
		req, _ := http.NewRequest("POST", h.Issuer+"/oauth2/revoke", strings.NewReader(url.Values{"token": {at}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("jwt-svc", svc.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if in := svc.Introspect(t, at); resp.StatusCode != http.StatusOK || in["active"] != false {
			t.Fatalf("after /oauth2/revoke (%d): %v", resp.StatusCode, in)
		}
		// A code exchange may not widen what the authorization granted.
		a := app.AuthURL(oauth2.SetAuthURLParam("resource", api))
		code := app.Code(t, br.Get(a.URL), a)
		if _, err := app.Conf.Exchange(h.Ctx, code, oauth2.VerifierOption(a.Verifier), oauth2.SetAuthURLParam("resource", reports)); err == nil ||
			!strings.Contains(err.Error(), "invalid_target") {
			t.Fatalf("exchange for a resource the authorization did not grant: %v", err)
		}
	})

	t.Run("DPoP-bound JWT carries cnf", func(t *testing.T) {
		key := newDPoPKey(t)
		svc := h.NewRP("jwt-dpop", func(c *clients.Client) {
			c.GrantTypes, c.Scopes, c.AccessTokenFormat = []string{"client_credentials"}, []string{"read"}, clients.AccessTokenJWT
		})
		status, out := tokenRequest(t, h, "jwt-dpop", svc.Secret, key.proof(t, "POST", h.Issuer+"/oauth2/token", ""),
			url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
		if status != http.StatusOK || out["token_type"] != "DPoP" {
			t.Fatalf("%d %v", status, out)
		}
		if c := verifyAccessToken(t, h, out["access_token"].(string), "jwt-dpop"); c.CNF["jkt"] != key.jkt {
			t.Errorf("cnf %v, want jkt %s", c.CNF, key.jkt)
		}
	})

	t.Run("opaque client unchanged", func(t *testing.T) {
		plain := h.NewRP("plain")
		a := plain.AuthURL()
		tok, _, _ := plain.Exchange(t, plain.Code(t, br.Get(a.URL), a), a)
		if _, err := jwt.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.RS256, jose.ES256}); err == nil {
			t.Fatalf("an opaque-format client got a JWT: %s", tok.AccessToken)
		}
		if in := plain.Introspect(t, tok.AccessToken); in["active"] != true {
			t.Fatalf("introspection: %v", in)
		}
	})

	// A JWT access token dies with its session: the JWT still verifies
	// offline (only introspection sees the revocation), but the provider
	// no longer knows it.
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: alice.ID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if in := app.Introspect(t, tok.AccessToken); in["active"] != false {
		t.Errorf("introspection after revoke-all: %v", in)
	}
	if status, _, _ := userinfo(t, h, "GET", "Bearer "+tok.AccessToken, ""); status != http.StatusUnauthorized {
		t.Errorf("userinfo with a revoked JWT access token: %d", status)
	}
	verifyAccessToken(t, h, tok.AccessToken, api)
}
