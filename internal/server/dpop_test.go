package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// dpopKey is a client's DPoP key, and the client side of RFC 9449 written
// from the RFC: a proof is a JWT of typ dpop+jwt, signed with the key,
// carrying its public JWK in the header, with jti, htm, htu, iat and, with
// an access token, ath.
type dpopKey struct {
	key *ecdsa.PrivateKey
	jkt string
}

func newDPoPKey(t *testing.T) dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{key: k, jkt: base64.RawURLEncoding.EncodeToString(thumb)}
}

// proofClaims are a proof's claims; edit lets a test break one.
type proofClaims struct {
	JTI   string `json:"jti,omitempty"`
	HTM   string `json:"htm,omitempty"`
	HTU   string `json:"htu,omitempty"`
	IAT   int64  `json:"iat,omitempty"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

func (k dpopKey) proof(t *testing.T, method, u, accessToken string, edit ...func(*proofClaims, *jose.SignerOptions)) string {
	t.Helper()
	jti := make([]byte, 16)
	rand.Read(jti)
	c := proofClaims{JTI: hex.EncodeToString(jti), HTM: method, HTU: u, IAT: time.Now().Unix()}
	if accessToken != "" {
		c.ATH = athOf(accessToken)
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	for _, e := range edit {
		e(&c, opts)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func athOf(token string) string {
	sum := sha256Sum(token)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// dpopTransport adds a fresh proof to every request, as a DPoP client
// library does, so x/oauth2 and go-oidc can be used unchanged.
type dpopTransport struct {
	t   *testing.T
	key dpopKey
}

func (d dpopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	r.Header.Set("DPoP", d.key.proof(d.t, r.Method, u.String(), ""))
	return http.DefaultTransport.RoundTrip(r)
}

// tokenRequest posts form to the token endpoint as the client, with a
// proof when proof is not "", and returns the JSON answer.
func tokenRequest(t *testing.T, h *servertest.Harness, id, secret, proof string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.Issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func userinfo(t *testing.T, h *servertest.Harness, method, auth, proof string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, h.Issuer+"/userinfo", nil)
	req.Header.Set("Authorization", auth)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), out
}

// TestDPoP_TokenEndpoint: a client_credentials token requested with a
// proof is bound to its key (token_type DPoP, cnf.jkt in introspection);
// each bad proof is refused with invalid_dpop_proof, and a replay is
// refused by another instance too.
func TestDPoP_TokenEndpoint(t *testing.T) {
	h := servertest.New(t)
	svc := h.NewRP("svc", func(c *clients.Client) { c.GrantTypes = []string{"client_credentials"}; c.Scopes = []string{"read"} })
	key := newDPoPKey(t)
	tokenURL := h.Issuer + "/oauth2/token"
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}

	var disc map[string]any
	getJSON(t, h.Issuer+"/.well-known/openid-configuration", &disc)
	if algs, _ := disc["dpop_signing_alg_values_supported"].([]any); len(algs) == 0 || algs[0] != "ES256" {
		t.Fatalf("dpop_signing_alg_values_supported = %v", disc["dpop_signing_alg_values_supported"])
	}

	status, out := tokenRequest(t, h, "svc", svc.Secret, key.proof(t, "POST", tokenURL, ""), cc)
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("token with a proof: %d %v", status, out)
	}
	at := out["access_token"].(string)
	in := svc.Introspect(t, at)
	cnf, _ := in["cnf"].(map[string]any)
	if in["active"] != true || cnf["jkt"] != key.jkt || in["token_type"] != "DPoP" {
		t.Fatalf("introspection of a bound token: %v, want cnf.jkt %s", in, key.jkt)
	}
	status, out = tokenRequest(t, h, "svc", svc.Secret, "", cc)
	if status != http.StatusOK || out["token_type"] != "bearer" {
		t.Fatalf("token without a proof: %d %v", status, out)
	}
	if in := svc.Introspect(t, out["access_token"].(string)); in["cnf"] != nil {
		t.Fatalf("a bearer token has cnf: %v", in)
	}

	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey}, (&jose.SignerOptions{}).WithType("dpop+jwt"))
	symmetric, _ := jwt.Signed(hs).Claims(proofClaims{JTI: "x", HTM: "POST", HTU: tokenURL, IAT: time.Now().Unix()}).Serialize()
	other := newDPoPKey(t)
	replayed := key.proof(t, "POST", tokenURL, "")
	if status, _ := tokenRequest(t, h, "svc", svc.Secret, replayed, cc); status != http.StatusOK {
		t.Fatalf("first use of a proof: %d", status)
	}
	cases := []struct {
		name, proof string
		why         string // in the error's description
	}{
		{"replayed", replayed, "used before"},
		{"another URL", key.proof(t, "POST", h.Issuer+"/oauth2/revoke", ""), "htu"},
		{"another method", key.proof(t, "GET", tokenURL, ""), "htm"},
		{"typ not dpop+jwt", key.proof(t, "POST", tokenURL, "", func(_ *proofClaims, o *jose.SignerOptions) { o.WithType("JWT") }), "typ"},
		{"no jwk", key.proof(t, "POST", tokenURL, "", func(_ *proofClaims, o *jose.SignerOptions) { o.EmbedJWK = false }), "jwk"},
		{"symmetric alg", symmetric, "signed with one of"},
		{"too old", key.proof(t, "POST", tokenURL, "", func(c *proofClaims, _ *jose.SignerOptions) { c.IAT = time.Now().Add(-10 * time.Minute).Unix() }), "too old"},
		{"from the future", key.proof(t, "POST", tokenURL, "", func(c *proofClaims, _ *jose.SignerOptions) { c.IAT = time.Now().Add(10 * time.Minute).Unix() }), "future"},
		{"no jti", key.proof(t, "POST", tokenURL, "", func(c *proofClaims, _ *jose.SignerOptions) { c.JTI = "" }), "jti"},
		{"ath without a token", key.proof(t, "POST", tokenURL, "some-token"), "ath"},
		{"signed by another key than its jwk", swapJWK(t, key.proof(t, "POST", tokenURL, ""), other), "does not verify"},
		{"not a JWT", "not-a-jwt", "not a JWT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before int
			h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM oauth_access_tokens`).Scan(&before)
			status, out := tokenRequest(t, h, "svc", svc.Secret, tc.proof, cc)
			if desc, _ := out["error_description"].(string); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" ||
				!strings.Contains(desc, tc.why) {
				t.Fatalf("%d %v, want 400 invalid_dpop_proof saying %q", status, out, tc.why)
			}
			var after int
			h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM oauth_access_tokens`).Scan(&after)
			if after != before {
				t.Fatalf("a refused request stored %d tokens", after-before)
			}
		})
	}

	t.Run("replayed to another instance", func(t *testing.T) {
		two := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Issuer = h.Issuer })
		p := key.proof(t, "POST", tokenURL, "")
		if status, _ := tokenRequest(t, h, "svc", svc.Secret, p, cc); status != http.StatusOK {
			t.Fatalf("first use: %d", status)
		}
		req, _ := http.NewRequest("POST", two.URL+"/oauth2/token", strings.NewReader(cc.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svc.Secret)
		req.Header.Set("DPoP", p)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
			t.Fatalf("the same proof at the other instance: %d %v", resp.StatusCode, out)
		}
	})

	t.Run("admin API refuses a bound token", func(t *testing.T) {
		secret := h.NewRP("offboarding", func(c *clients.Client) {
			c.GrantTypes, c.Scopes, c.AdminServiceAccount = []string{"client_credentials"}, []string{"admin"}, true
		}).Secret
		adminCC := url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}
		call := func(token string) int {
			req, _ := http.NewRequest("GET", h.Issuer+"/admin/api/users?email=nobody@example.com", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		_, bearer := tokenRequest(t, h, "offboarding", secret, "", adminCC)
		if got := call(bearer["access_token"].(string)); got == http.StatusUnauthorized || got == http.StatusForbidden {
			t.Fatalf("the service account's bearer token: %d", got)
		}
		_, bound := tokenRequest(t, h, "offboarding", secret, key.proof(t, "POST", tokenURL, ""), adminCC)
		if got := call(bound["access_token"].(string)); got != http.StatusUnauthorized {
			t.Fatalf("a DPoP-bound token as a bearer token at the admin API: %d, want 401", got)
		}
	})

	t.Run("SSF API refuses a bound token", func(t *testing.T) {
		secret := h.NewRP("siem", func(c *clients.Client) {
			c.GrantTypes, c.Scopes = []string{"client_credentials"}, []string{"ssf"}
		}).Secret
		ssfCC := url.Values{"grant_type": {"client_credentials"}, "scope": {"ssf"}}
		call := func(token string) int {
			req, _ := http.NewRequest("GET", h.Issuer+"/ssf/streams", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		_, plain := tokenRequest(t, h, "siem", secret, "", ssfCC)
		if got := call(plain["access_token"].(string)); got != http.StatusOK {
			t.Fatalf("the receiver's bearer token: %d, want 200", got)
		}
		_, bound := tokenRequest(t, h, "siem", secret, key.proof(t, "POST", tokenURL, ""), ssfCC)
		if got := call(bound["access_token"].(string)); got != http.StatusUnauthorized {
			t.Fatalf("a DPoP-bound token as a bearer token at the SSF API: %d, want 401", got)
		}
	})

	t.Run("client that requires DPoP", func(t *testing.T) {
		bound := h.NewRP("bound", func(c *clients.Client) {
			c.GrantTypes = []string{"client_credentials"}
			c.Scopes = []string{"read"}
			c.DPoPBoundAccessTokens = true
		})
		status, out := tokenRequest(t, h, "bound", bound.Secret, "", cc)
		if status != http.StatusBadRequest || out["error"] != "invalid_request" || !strings.Contains(out["error_description"].(string), "DPoP") {
			t.Fatalf("no proof from a dpop_bound_access_tokens client: %d %v", status, out)
		}
		status, out = tokenRequest(t, h, "bound", bound.Secret, key.proof(t, "POST", tokenURL, ""), cc)
		if status != http.StatusOK || out["token_type"] != "DPoP" {
			t.Fatalf("with a proof: %d %v", status, out)
		}
	})
}

// swapJWK replaces a proof's header jwk with other's public key, keeping
// the signature: the signature no longer verifies with the header's key.
func swapJWK(t *testing.T, proof string, other dpopKey) string {
	t.Helper()
	parts := strings.Split(proof, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var hdr map[string]any
	json.Unmarshal(raw, &hdr)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: other.key.Public()})
	var m map[string]any
	json.Unmarshal(jwk, &m)
	hdr["jwk"] = m
	raw, _ = json.Marshal(hdr)
	parts[0] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// TestDPoP_Userinfo: a person's tokens from the code flow, requested with
// proofs through x/oauth2 and go-oidc unchanged, are bound; userinfo takes
// the access token only with the DPoP scheme and a proof of the same key
// for this request and this token; a revoke-all kills it.
func TestDPoP_Userinfo(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	key := newDPoPKey(t)
	br := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := br.SignIn(a.URL, "alice@example.com", password)
	code := app.Code(t, p, a)
	ctx := context.WithValue(h.Ctx, oauth2.HTTPClient, &http.Client{Transport: dpopTransport{t: t, key: key}})
	tok, err := app.Conf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatalf("exchange with a proof: %v", err)
	}
	if tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q, want DPoP", tok.TokenType)
	}
	at := tok.AccessToken
	ui := h.Issuer + "/userinfo"

	status, _, out := userinfo(t, h, "GET", "DPoP "+at, key.proof(t, "GET", ui, at))
	if status != http.StatusOK || out["sub"] != alice.ID {
		t.Fatalf("userinfo with the DPoP scheme and a proof: %d %v", status, out)
	}
	other := newDPoPKey(t)
	replayed := key.proof(t, "GET", ui, at)
	userinfo(t, h, "GET", "DPoP "+at, replayed)
	cases := []struct {
		name, auth, proof, want string
	}{
		{"as a bearer token", "Bearer " + at, "", "invalid_token"},
		{"as a bearer token with a proof", "Bearer " + at, key.proof(t, "GET", ui, at), "invalid_token"},
		{"no proof", "DPoP " + at, "", "invalid_dpop_proof"},
		{"proof by another key", "DPoP " + at, other.proof(t, "GET", ui, at), "invalid_dpop_proof"},
		{"proof without ath", "DPoP " + at, key.proof(t, "GET", ui, ""), "invalid_dpop_proof"},
		{"proof for another token", "DPoP " + at, key.proof(t, "GET", ui, "another-token"), "invalid_dpop_proof"},
		{"proof for another method", "DPoP " + at, key.proof(t, "POST", ui, at), "invalid_dpop_proof"},
		{"proof for another URL", "DPoP " + at, key.proof(t, "GET", h.Issuer+"/oauth2/introspect", at), "invalid_dpop_proof"},
		{"replayed proof", "DPoP " + at, replayed, "invalid_dpop_proof"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, out := userinfo(t, h, "GET", tc.auth, tc.proof)
			if status != http.StatusUnauthorized || out["error"] != tc.want || !strings.HasPrefix(challenge, "DPoP ") {
				t.Fatalf("%d %v (WWW-Authenticate %q), want 401 %s with a DPoP challenge", status, out, challenge, tc.want)
			}
		})
	}
	t.Run("a bearer token with the DPoP scheme", func(t *testing.T) {
		a := app.AuthURL()
		bearer, _, _ := app.Exchange(t, app.Code(t, br.Get(a.URL), a), a)
		status, _, out := userinfo(t, h, "GET", "DPoP "+bearer.AccessToken, key.proof(t, "GET", ui, bearer.AccessToken))
		if status != http.StatusUnauthorized || out["error"] != "invalid_token" {
			t.Fatalf("%d %v, want invalid_token", status, out)
		}
		if status, _, _ := userinfo(t, h, "GET", "Bearer "+bearer.AccessToken, ""); status != http.StatusOK {
			t.Fatalf("the bearer token as a bearer token: %d", status)
		}
	})

	// The refresh is bound too: its proof binds the new access token.
	fresh, err := app.Conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.TokenType != "DPoP" {
		t.Fatalf("refresh with a proof: %v %v", fresh, err)
	}
	if in := app.Introspect(t, fresh.AccessToken); in["cnf"].(map[string]any)["jkt"] != key.jkt {
		t.Fatalf("refreshed token: %v", in)
	}

	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: alice.ID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if in := app.Introspect(t, fresh.AccessToken); in["active"] != false {
		t.Errorf("a bound token after revoke-all: %v", in)
	}
	status, _, _ = userinfo(t, h, "GET", "DPoP "+fresh.AccessToken, key.proof(t, "GET", ui, fresh.AccessToken))
	if status != http.StatusUnauthorized {
		t.Errorf("userinfo with a revoked bound token: %d", status)
	}
	if _, err := app.Conf.TokenSource(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); err == nil {
		t.Error("a bound refresh token works after revoke-all")
	}
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// TestDPoP_PublicClientRefresh: a public client's refresh token is bound to
// the key of its proof: a refresh with another key or none is refused and
// spends nothing; with the key it works. A confidential client may move
// to a new key (its secret identifies it).
func TestDPoP_PublicClientRefresh(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	pub := h.NewRP("native", func(c *clients.Client) {
		c.Public = true
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
	})
	pub.Conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	key := newDPoPKey(t)
	br := servertest.NewBrowser(t)
	a := pub.AuthURL()
	code := pub.Code(t, br.SignIn(a.URL, "alice@example.com", password), a)
	withKey := func(k dpopKey) context.Context {
		return context.WithValue(h.Ctx, oauth2.HTTPClient, &http.Client{Transport: dpopTransport{t: t, key: k}})
	}
	tok, err := pub.Conf.Exchange(withKey(key), code, oauth2.VerifierOption(a.Verifier))
	if err != nil || tok.TokenType != "DPoP" || tok.RefreshToken == "" {
		t.Fatalf("exchange with a proof: %v %v", tok, err)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"native"}}
	for name, proof := range map[string]string{
		"another key": newDPoPKey(t).proof(t, "POST", h.Issuer+"/oauth2/token", ""),
		"no proof":    "",
	} {
		t.Run(name, func(t *testing.T) {
			status, out := tokenRequest(t, h, "", "", proof, refresh)
			if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
				t.Fatalf("refresh of a bound refresh token with %s: %d %v, want invalid_dpop_proof", name, status, out)
			}
		})
	}
	fresh, err := pub.Conf.TokenSource(withKey(key), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.TokenType != "DPoP" {
		t.Fatalf("refresh with the token's key after refused attempts: %v %v", fresh, err)
	}

	conf := h.NewRP("web")
	a = conf.AuthURL()
	code = conf.Code(t, br.Get(a.URL), a)
	tok, err = conf.Conf.Exchange(withKey(key), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conf.Conf.TokenSource(withKey(newDPoPKey(t)), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatalf("a confidential client's refresh with a new key: %v", err)
	}
}

// TestDPoP_Nonces: with IDP_DPOP_NONCES a proof without the server's nonce
// is answered use_dpop_nonce with a DPoP-Nonce header, at the token
// endpoint (400) and at userinfo (401); the client retries with it, at
// either instance (the nonce is the same everywhere).
func TestDPoP_Nonces(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.DPoPNonces = true })
	two := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Issuer = h.Issuer; c.DPoPNonces = true })
	h.CreateUser("alice@example.com", password)
	svc := h.NewRP("svc", func(c *clients.Client) { c.GrantTypes = []string{"client_credentials"}; c.Scopes = []string{"openid"} })
	key := newDPoPKey(t)
	tokenURL := h.Issuer + "/oauth2/token"
	cc := url.Values{"grant_type": {"client_credentials"}}
	withNonce := func(n string) func(*proofClaims, *jose.SignerOptions) {
		return func(c *proofClaims, _ *jose.SignerOptions) { c.Nonce = n }
	}

	post := func(base, proof string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(cc.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svc.Secret)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	resp, out := post(h.URL, key.proof(t, "POST", tokenURL, ""))
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != http.StatusBadRequest || out["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("a proof without a nonce: %d %v, DPoP-Nonce %q", resp.StatusCode, out, nonce)
	}
	if resp, out := post(h.URL, key.proof(t, "POST", tokenURL, "", withNonce("made-up"))); out["error"] != "use_dpop_nonce" {
		t.Fatalf("a made-up nonce: %d %v", resp.StatusCode, out)
	}
	resp, out = post(two.URL, key.proof(t, "POST", tokenURL, "", withNonce(nonce)))
	if resp.StatusCode != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("with the nonce, at the other instance: %d %v", resp.StatusCode, out)
	}

	// Userinfo asks for the nonce the same way (a person's token).
	app := h.NewRP("app")
	br := servertest.NewBrowser(t)
	a := app.AuthURL()
	code := app.Code(t, br.SignIn(a.URL, "alice@example.com", password), a)
	status, tok := tokenRequest(t, h, "app", app.Secret, key.proof(t, "POST", tokenURL, "", withNonce(nonce)),
		url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {app.Conf.RedirectURL},
			"code_verifier": {a.Verifier}})
	if status != http.StatusOK {
		t.Fatalf("code exchange with the nonce: %d %v", status, tok)
	}
	at := tok["access_token"].(string)
	ui := h.Issuer + "/userinfo"
	status, challenge, out := userinfo(t, h, "GET", "DPoP "+at, key.proof(t, "GET", ui, at))
	if status != http.StatusUnauthorized || out["error"] != "use_dpop_nonce" || !strings.Contains(challenge, `error="use_dpop_nonce"`) {
		t.Fatalf("userinfo without the nonce: %d %v %q", status, out, challenge)
	}
	if status, _, out := userinfo(t, h, "GET", "DPoP "+at, key.proof(t, "GET", ui, at, withNonce(nonce))); status != http.StatusOK {
		t.Fatalf("userinfo with the nonce: %d %v", status, out)
	}
}
