package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
)

// postWithProof posts form to path as the client (Basic), with proof in
// the DPoP header when not "", and returns the status and the JSON body
// (nil when there is none).
func postWithProof(t *testing.T, h *servertest.Harness, path, id, secret, proof string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.Issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
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
