package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// assertionClient is the client side of RFC 7523 §2.2 as an app writes
// it: a key pair, the public half registered, assertions signed with the
// private one.
type assertionClient struct {
	id  string
	key any    // *rsa.PrivateKey or *ecdsa.PrivateKey
	kid string // in the JWS header
	alg jose.SignatureAlgorithm
}

func newRSAClient(t *testing.T, id, kid string) *assertionClient {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &assertionClient{id: id, key: k, kid: kid, alg: jose.RS256}
}

// jwks is the client's public key set, as it registers or publishes it.
func (c *assertionClient) jwks(t *testing.T) []byte {
	t.Helper()
	var pub any
	switch k := c.key.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: c.kid, Algorithm: string(c.alg), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type claims struct {
	jwt.Claims
}

// assertion signs an assertion with aud and the given lifetime and jti
// ("" for a fresh one).
func (c *assertionClient) assertion(t *testing.T, aud, jti string, iat time.Time, life time.Duration) string {
	t.Helper()
	if jti == "" {
		b := make([]byte, 16)
		rand.Read(b)
		jti = hex.EncodeToString(b)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: c.alg, Key: c.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", c.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.id, Subject: c.id, Audience: jwt.Audience{aud}, ID: jti,
		IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(life)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tokenWith asks base's token endpoint for a client_credentials token
// with assertion; it returns the status and the JSON answer.
func tokenWith(t *testing.T, base, assertion string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := http.PostForm(base+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("token: status %d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// wantRefused: the assertion gets invalid_client at base's token endpoint.
func wantRefused(t *testing.T, base, assertion string, extra url.Values) {
	t.Helper()
	status, out := tokenWith(t, base, assertion, extra)
	wantInvalidClient(t, status, out)
}

func wantInvalidClient(t *testing.T, status int, out map[string]any) {
	t.Helper()
	if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("status %d %v, want 401 invalid_client", status, out)
	}
}

func TestProvider_PrivateKeyJWT(t *testing.T) {
	h := servertest.New(t)
	tokenURL := h.Issuer + "/oauth2/token"
	app := newRSAClient(t, "signer", "key-1")
	if secret, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: app.id, GrantTypes: []string{"client_credentials"},
		Scopes: []string{"reports"}, TokenEndpointAuthMethod: clients.PrivateKeyJWT, JWKS: app.jwks(t)}); err != nil || secret != "" {
		t.Fatalf("create: secret %q, %v; want no secret", secret, err)
	}
	now := time.Now()

	t.Run("a good assertion buys a token", func(t *testing.T) {
		status, out := tokenWith(t, h.Issuer, app.assertion(t, tokenURL, "", now, time.Minute), url.Values{"scope": {"reports"}})
		tok, _ := out["access_token"].(string)
		if status != http.StatusOK || tok == "" {
			t.Fatalf("status %d %v, want a token", status, out)
		}
		// The client authenticates the same way at introspection.
		resp, err := http.PostForm(h.Issuer+"/oauth2/introspect", url.Values{"token": {tok},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {app.assertion(t, tokenURL, "", now, time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]any
		json.NewDecoder(resp.Body).Decode(&got)
		if got["active"] != true || got["client_id"] != app.id || got["scope"] != "reports" {
			t.Fatalf("introspection = %v", got)
		}
	})
	t.Run("aud may be the issuer", func(t *testing.T) {
		if status, out := tokenWith(t, h.Issuer, app.assertion(t, h.Issuer, "", now, time.Minute), nil); status != http.StatusOK {
			t.Fatalf("status %d %v", status, out)
		}
	})
	t.Run("a replayed assertion is refused, on every instance", func(t *testing.T) {
		a := app.assertion(t, tokenURL, "", now, time.Minute)
		if status, out := tokenWith(t, h.Issuer, a, nil); status != http.StatusOK {
			t.Fatalf("first use: %d %v", status, out)
		}
		wantRefused(t, h.Issuer, a, nil)
		other := servertest.NewInstance(t, h.DB)
		wantRefused(t, other.URL, a, nil)
		// Another assertion with the same jti is the same replay.
		wantRefused(t, other.URL, app.assertion(t, tokenURL, claimsID(t, a), now, 2*time.Minute), nil)
	})
	t.Run("another audience is refused and spends nothing", func(t *testing.T) {
		wantRefused(t, h.Issuer, app.assertion(t, "https://other-as.example.com/token", "jti-aud", now, time.Minute), nil)
		// Its jti was not kept: the client may still use it, for us.
		if status, out := tokenWith(t, h.Issuer, app.assertion(t, tokenURL, "jti-aud", now, time.Minute), nil); status != http.StatusOK {
			t.Fatalf("the same jti for the right audience: %d %v", status, out)
		}
	})
	t.Run("an expired assertion is refused", func(t *testing.T) {
		wantRefused(t, h.Issuer, app.assertion(t, tokenURL, "", now.Add(-10*time.Minute), 5*time.Minute), nil)
	})
	t.Run("an assertion valid for days is refused", func(t *testing.T) {
		wantRefused(t, h.Issuer, app.assertion(t, tokenURL, "", now, 72*time.Hour), nil)
	})
	t.Run("an assertion signed by another key is refused", func(t *testing.T) {
		impostor := newRSAClient(t, app.id, app.kid) // same kid, another key
		wantRefused(t, h.Issuer, impostor.assertion(t, tokenURL, "", now, time.Minute), nil)
		stranger := newRSAClient(t, app.id, "key-2") // a kid the client never registered
		wantRefused(t, h.Issuer, stranger.assertion(t, tokenURL, "", now, time.Minute), nil)
	})
	t.Run("an assertion for another client is refused", func(t *testing.T) {
		wantRefused(t, h.Issuer, app.assertion(t, tokenURL, "", now, time.Minute), url.Values{"client_id": {"someone-else"}})
	})
	t.Run("a secret is not accepted from a private_key_jwt client", func(t *testing.T) {
		req, _ := http.NewRequest("POST", tokenURL, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(app.id, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		wantInvalidClient(t, resp.StatusCode, out)
	})

	t.Run("keys at a jwks_uri, fetched once and cached", func(t *testing.T) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub := &assertionClient{id: "published", key: k, kid: "ec-1", alg: jose.ES256}
		var fetches atomic.Int32
		jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Write(pub.jwks(t))
		}))
		t.Cleanup(jwksSrv.Close)
		if _, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: pub.id, GrantTypes: []string{"client_credentials"},
			TokenEndpointAuthMethod: clients.PrivateKeyJWT, TokenEndpointAuthSigningAlg: "ES256", JWKSURI: jwksSrv.URL + "/jwks.json"}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if status, out := tokenWith(t, h.Issuer, pub.assertion(t, tokenURL, "", now, time.Minute), nil); status != http.StatusOK {
				t.Fatalf("status %d %v", status, out)
			}
		}
		if n := fetches.Load(); n != 1 {
			t.Fatalf("the key set was fetched %d times, want once", n)
		}
		// RS256 is not this client's algorithm.
		rs := newRSAClient(t, pub.id, "ec-1")
		wantRefused(t, h.Issuer, rs.assertion(t, tokenURL, "", now, time.Minute), nil)
	})

	t.Run("an admin service account with private_key_jwt", func(t *testing.T) {
		ops := newRSAClient(t, "offboarding", "key-1")
		if _, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: ops.id, GrantTypes: []string{"client_credentials"},
			AdminServiceAccount: true, TokenEndpointAuthMethod: clients.PrivateKeyJWT, JWKS: ops.jwks(t)}); err != nil {
			t.Fatal(err)
		}
		status, out := tokenWith(t, h.Issuer, ops.assertion(t, tokenURL, "", now, time.Minute), url.Values{"scope": {"admin"}})
		tok, _ := out["access_token"].(string)
		if status != http.StatusOK || out["scope"] != "admin" {
			t.Fatalf("status %d %v, want a token with the admin scope", status, out)
		}
		req, _ := http.NewRequest("GET", h.Issuer+"/admin/api/users?email=nobody@example.com", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound { // authorized, and there is no such user
			t.Fatalf("the admin API answered %d to the service account, want 404 (no such user)", resp.StatusCode)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		resp, err := http.Get(h.Issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
			Algs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		}
		json.NewDecoder(resp.Body).Decode(&d)
		if !strings.Contains(strings.Join(d.Methods, " "), "private_key_jwt") || !strings.Contains(strings.Join(d.Algs, " "), "RS256") ||
			strings.Contains(strings.Join(d.Algs, " "), "HS256") {
			t.Fatalf("discovery: methods %v, algorithms %v", d.Methods, d.Algs)
		}
	})
}

// claimsID is the jti of a signed assertion.
func claimsID(t *testing.T, raw string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// TestProvider_FAPIStyleCodeFlow: the FAPI 2.0 combination, written from
// the RFCs: a private_key_jwt client that must push its requests pushes
// one authenticated by an assertion, the browser brings the request_uri,
// the code comes back with iss, and the client exchanges it with another
// assertion; go-oidc verifies the ID token.
func TestProvider_FAPIStyleCodeFlow(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	tokenURL := h.Issuer + "/oauth2/token"
	signer := newRSAClient(t, "fapi", "key-1")
	rp := h.NewRP(signer.id, func(c *clients.Client) {
		c.RequirePAR = true
		c.TokenEndpointAuthMethod = clients.PrivateKeyJWT
		c.JWKS = signer.jwks(t)
		c.GrantTypes = []string{"authorization_code"}
	})
	a := newAuthRequest(rp)
	assertion := func() url.Values {
		return url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {signer.assertion(t, tokenURL, "", time.Now(), time.Minute)}}
	}

	form := pushParams(rp, a)
	for k, v := range assertion() {
		form[k] = v
	}
	resp, err := http.PostForm(h.Issuer+"/oauth2/par", form)
	if err != nil {
		t.Fatal(err)
	}
	var pushedOut map[string]any
	json.NewDecoder(resp.Body).Decode(&pushedOut)
	resp.Body.Close()
	uri, _ := pushedOut["request_uri"].(string)
	if resp.StatusCode != http.StatusCreated || uri == "" {
		t.Fatalf("par: %d %v", resp.StatusCode, pushedOut)
	}
	// A push refused after the client authenticated spends its assertion.
	refused := pushParams(rp, a)
	refused.Set("scope", "openid not-registered")
	spent := assertion()
	for k, v := range spent {
		refused[k] = v
	}
	resp, err = http.PostForm(h.Issuer+"/oauth2/par", refused)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a push with a scope not registered: %d, want 400", resp.StatusCode)
	}
	wantRefused(t, h.Issuer, spent.Get("client_assertion"), nil)
	// The same assertion again is a replay, at the PAR endpoint too.
	resp, err = http.PostForm(h.Issuer+"/oauth2/par", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a replayed assertion at PAR: %d, want 401", resp.StatusCode)
	}

	p := servertest.NewBrowser(t).SignIn(h.Issuer+"/oauth2/auth?"+url.Values{"client_id": {rp.ID}, "request_uri": {uri}}.Encode(),
		"alice@example.com", password)
	if p.URL.Query().Get("iss") != h.Issuer {
		t.Fatalf("no iss in %s", p.URL)
	}
	code := rp.Code(t, p, a)

	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rp.Conf.RedirectURL},
		"code_verifier": {a.Verifier}}
	for k, v := range assertion() {
		exchange[k] = v
	}
	resp, err = http.PostForm(tokenURL, exchange)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok map[string]any
	json.NewDecoder(resp.Body).Decode(&tok)
	raw, _ := tok["id_token"].(string)
	if resp.StatusCode != http.StatusOK || raw == "" {
		t.Fatalf("exchange: %d %v", resp.StatusCode, tok)
	}
	idt, err := rp.Provider.Verifier(&oidc.Config{ClientID: rp.ID}).Verify(h.Ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != a.Nonce {
		t.Fatalf("nonce %q, want %q", idt.Nonce, a.Nonce)
	}
}
