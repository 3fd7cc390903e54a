package server_test

import (
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/servertest"
)

// TestDPoP_AuthorizationCodeBinding: an authorization request's dpop_jkt
// (RFC 9449 §10) binds the code to that key: an exchange without a proof
// or with a proof by another key is invalid_dpop_proof and spends nothing;
// the exchange with a proof by the key works and binds the tokens; a
// dpop_jkt that cannot be a thumbprint is refused at once. A pushed
// request with a proof is bound to the proof's key (§10.1).
func TestDPoP_AuthorizationCodeBinding(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")
	key, other := newDPoPKey(t), newDPoPKey(t)
	tokenURL := h.Issuer + "/oauth2/token"
	br := servertest.NewBrowser(t)
	a := app.AuthURL(oauth2.SetAuthURLParam("dpop_jkt", key.jkt))
	code := app.Code(t, br.SignIn(a.URL, "alice@example.com", password), a)
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {app.Conf.RedirectURL},
		"code_verifier": {a.Verifier}}

	for name, proof := range map[string]string{
		"no proof":               "",
		"a proof by another key": other.proof(t, "POST", tokenURL, ""),
	} {
		t.Run(name, func(t *testing.T) {
			before := h.Stored(t)
			status, out := tokenRequest(t, h, "app", app.Secret, proof, exchange)
			if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
				t.Fatalf("%d %v, want invalid_dpop_proof", status, out)
			}
			if changed := before.Changed(h.Stored(t), "dpop_proofs"); len(changed) > 0 {
				t.Errorf("a refused exchange changed %v", changed)
			}
		})
	}
	status, out := tokenRequest(t, h, "app", app.Secret, key.proof(t, "POST", tokenURL, ""), exchange)
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("exchange with a proof by the key: %d %v", status, out)
	}
	if in := app.Introspect(t, out["access_token"].(string)); in["cnf"].(map[string]any)["jkt"] != key.jkt {
		t.Fatalf("introspection: %v", in)
	}

	t.Run("PAR with a proof binds the code", func(t *testing.T) {
		parURL := h.Issuer + "/oauth2/par"
		pushWithProof := func(a servertest.AuthRequest, proof string, extra url.Values) (int, map[string]any) {
			form := pushParams(app, a)
			for k, v := range extra {
				form[k] = v
			}
			return postWithProof(t, h, "/oauth2/par", "app", app.Secret, proof, form)
		}
		a := newAuthRequest(app)
		status, out := pushWithProof(a, key.proof(t, "POST", parURL, ""), nil)
		uri, _ := out["request_uri"].(string)
		if status != http.StatusCreated || uri == "" {
			t.Fatalf("push with a proof: %d %v", status, out)
		}
		code := app.Code(t, br.Get(h.Issuer+"/oauth2/auth?"+url.Values{"client_id": {app.ID}, "request_uri": {uri}}.Encode()), a)
		exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {app.Conf.RedirectURL},
			"code_verifier": {a.Verifier}}
		if status, out := tokenRequest(t, h, "app", app.Secret, other.proof(t, "POST", tokenURL, ""), exchange); status != http.StatusBadRequest ||
			out["error"] != "invalid_dpop_proof" {
			t.Fatalf("exchange of a pushed, bound code with another key: %d %v", status, out)
		}
		if status, out := tokenRequest(t, h, "app", app.Secret, key.proof(t, "POST", tokenURL, ""), exchange); status != http.StatusOK {
			t.Fatalf("exchange with the key: %d %v", status, out)
		}
		for name, tc := range map[string]struct {
			proof string
			extra url.Values
		}{
			"dpop_jkt of another key": {key.proof(t, "POST", parURL, ""), url.Values{"dpop_jkt": {other.jkt}}},
			"proof for another URL":   {key.proof(t, "POST", tokenURL, ""), nil},
		} {
			t.Run(name, func(t *testing.T) {
				status, out := pushWithProof(newAuthRequest(app), tc.proof, tc.extra)
				if status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
					t.Fatalf("%d %v, want invalid_dpop_proof", status, out)
				}
			})
		}
	})
	t.Run("malformed dpop_jkt", func(t *testing.T) {
		a := app.AuthURL(oauth2.SetAuthURLParam("dpop_jkt", "not-a-thumbprint"))
		if p := br.Get(a.URL); p.URL.Path != "/callback" || p.URL.Query().Get("error") != "invalid_request" {
			t.Fatalf("%s", p.URL)
		}
	})
	t.Run("no dpop_jkt: a bearer exchange works", func(t *testing.T) {
		a := app.AuthURL()
		code := app.Code(t, br.Get(a.URL), a)
		status, out := tokenRequest(t, h, "app", app.Secret, "", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {app.Conf.RedirectURL}, "code_verifier": {a.Verifier}})
		if status != http.StatusOK || out["token_type"] != "bearer" {
			t.Fatalf("%d %v", status, out)
		}
	})
}
