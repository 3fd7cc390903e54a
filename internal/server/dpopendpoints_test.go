package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// postWithProof posts form to path as the client (Basic; a public client,
// id "", names itself in form), with proof in the DPoP header when not "",
// and returns the status and the JSON body (nil when there is none).
func postWithProof(t *testing.T, h *servertest.Harness, path, id, secret, proof string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.Issuer+path, strings.NewReader(form.Encode()))
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
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("%s: %d %q is not JSON", path, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, out
}

// TestDPoP_IntrospectionAndRevocation: a DPoP proof sent to the
// introspection or the revocation endpoint is checked like one at the
// token endpoint (RFC 9449: htm, htu, jti replay across requests); a bad
// one is refused with invalid_dpop_proof and the request does nothing —
// in particular a refused revocation leaves the token active.
func TestDPoP_IntrospectionAndRevocation(t *testing.T) {
	h := servertest.New(t)
	svc := h.NewRP("svc", func(c *clients.Client) { c.GrantTypes = []string{"client_credentials"}; c.Scopes = []string{"read"} })
	key := newDPoPKey(t)
	introspectURL, revokeURL := h.Issuer+"/oauth2/introspect", h.Issuer+"/oauth2/revoke"
	newToken := func(t *testing.T) string {
		t.Helper()
		status, out := tokenRequest(t, h, "svc", svc.Secret, key.proof(t, "POST", h.Issuer+"/oauth2/token", ""),
			url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
		if status != http.StatusOK || out["token_type"] != "DPoP" {
			t.Fatalf("token: %d %v", status, out)
		}
		return out["access_token"].(string)
	}
	at := newToken(t)

	t.Run("introspection", func(t *testing.T) {
		form := url.Values{"token": {at}}
		good := key.proof(t, "POST", introspectURL, "")
		status, out := postWithProof(t, h, "/oauth2/introspect", "svc", svc.Secret, good, form)
		if status != http.StatusOK || out["active"] != true {
			t.Fatalf("with a good proof: %d %v", status, out)
		}
		if status, out := postWithProof(t, h, "/oauth2/introspect", "svc", svc.Secret, "", form); status != http.StatusOK || out["active"] != true {
			t.Fatalf("without a proof: %d %v", status, out)
		}
		cases := []struct{ name, proof string }{
			{"replayed", good},
			{"another URL", key.proof(t, "POST", h.Issuer+"/oauth2/token", "")},
			{"another method", key.proof(t, "GET", introspectURL, "")},
			{"not a JWT", "not-a-proof"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, out := postWithProof(t, h, "/oauth2/introspect", "svc", svc.Secret, tc.proof, form)
				if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" || out["active"] != nil {
					t.Fatalf("%d %v, want 400 invalid_dpop_proof and no answer about the token", status, out)
				}
			})
		}
	})

	t.Run("revocation", func(t *testing.T) {
		victim := newToken(t)
		form := url.Values{"token": {victim}}
		good := key.proof(t, "POST", revokeURL, "")
		// The good proof is spent first by a revocation of another token.
		if status, _ := postWithProof(t, h, "/oauth2/revoke", "svc", svc.Secret, good, url.Values{"token": {newToken(t)}}); status != http.StatusOK {
			t.Fatalf("revocation with a good proof: %d", status)
		}
		cases := []struct{ name, proof string }{
			{"replayed", good},
			{"another URL", key.proof(t, "POST", introspectURL, "")},
			{"another method", key.proof(t, "PUT", revokeURL, "")},
			{"not a JWT", "not-a-proof"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := h.Stored(t)
				status, out := postWithProof(t, h, "/oauth2/revoke", "svc", svc.Secret, tc.proof, form)
				if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
					t.Fatalf("%d %v, want 400 invalid_dpop_proof", status, out)
				}
				if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
					t.Errorf("a refused revocation changed %v", changed)
				}
				if in := svc.Introspect(t, victim); in["active"] != true {
					t.Fatalf("the token after a refused revocation: %v", in)
				}
			})
		}
		if status, _ := postWithProof(t, h, "/oauth2/revoke", "svc", svc.Secret, key.proof(t, "POST", revokeURL, ""), form); status != http.StatusOK {
			t.Fatalf("revocation with a fresh proof: %d", status)
		}
		if in := svc.Introspect(t, victim); in["active"] != false {
			t.Fatalf("the token after its revocation: %v", in)
		}
	})
}

// TestDPoP_PublicClientRevocation: a public client's DPoP-bound refresh
// token is revoked only with a proof by the key it is bound to (as it is
// refreshed only so): without a proof, or with another key's, the request
// is refused with invalid_dpop_proof and nothing changes; with the key it
// is revoked, and its refresh fails.
func TestDPoP_PublicClientRevocation(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	pub := h.NewRP("native", func(c *clients.Client) {
		c.Public = true
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
	})
	pub.Conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	key := newDPoPKey(t)
	withKey := context.WithValue(h.Ctx, oauth2.HTTPClient, &http.Client{Transport: dpopTransport{t: t, key: key}})
	br := servertest.NewBrowser(t)
	a := pub.AuthURL()
	code := pub.Code(t, br.SignIn(a.URL, "alice@example.com", password), a)
	tok, err := pub.Conf.Exchange(withKey, code, oauth2.VerifierOption(a.Verifier))
	if err != nil || tok.TokenType != "DPoP" || tok.RefreshToken == "" {
		t.Fatalf("exchange with a proof: %v %v", tok, err)
	}
	revokeURL := h.Issuer + "/oauth2/revoke"
	for _, hint := range []string{"", "refresh_token", "access_token"} {
		form := url.Values{"token": {tok.RefreshToken}, "client_id": {"native"}}
		if hint != "" {
			form.Set("token_type_hint", hint)
		}
		for name, proof := range map[string]string{
			"no proof":    "",
			"another key": newDPoPKey(t).proof(t, "POST", revokeURL, ""),
		} {
			t.Run(name+" hint "+hint, func(t *testing.T) {
				before := h.Stored(t)
				status, out := postWithProof(t, h, "/oauth2/revoke", "", "", proof, form)
				if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
					t.Fatalf("%d %v, want 400 invalid_dpop_proof", status, out)
				}
				if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
					t.Errorf("a refused revocation changed %v", changed)
				}
			})
		}
	}
	form := url.Values{"token": {tok.RefreshToken}, "client_id": {"native"}}
	if status, out := postWithProof(t, h, "/oauth2/revoke", "", "", key.proof(t, "POST", revokeURL, ""), form); status != http.StatusOK {
		t.Fatalf("revocation with the token's key: %d %v", status, out)
	}
	if _, err := pub.Conf.TokenSource(withKey, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the refresh token works after its revocation")
	}
}
