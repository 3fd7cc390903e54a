package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/store"
)

// DPoP (RFC 9449) at this provider: a token request with a valid proof
// gets access (and refresh) tokens bound to the proof's key (cnf.jkt, kept
// with the token, see store.BoundKeyParam) and token_type DPoP; a client
// registered with dpop_bound_access_tokens gets tokens only so. Userinfo
// takes a bound token only with a proof of the same key for that request
// and token (ath); introspection tells resource servers the binding (cnf).

// errInvalidDPoPProof is RFC 9449 §5's error, in fosite's format.
func errInvalidDPoPProof(err error) *fosite.RFC6749Error {
	desc := "The DPoP proof is invalid."
	if err != nil {
		desc = strings.TrimPrefix(err.Error(), dpop.ErrInvalid.Error()+": ")
		desc = "The DPoP proof is invalid: " + desc + "."
	}
	return &fosite.RFC6749Error{ErrorField: "invalid_dpop_proof", CodeField: http.StatusBadRequest, DescriptionField: desc}
}

// errUseDPoPNonce asks for a proof with the nonce of the DPoP-Nonce
// header (RFC 9449 §8).
var errUseDPoPNonce = &fosite.RFC6749Error{ErrorField: "use_dpop_nonce", CodeField: http.StatusBadRequest,
	DescriptionField: "The DPoP proof must carry the nonce of the DPoP-Nonce response header."}

// setNonce hands out the current nonce, when nonces are on, with every
// answer of an endpoint that checks proofs.
func (p *Provider) setNonce(w http.ResponseWriter) {
	if n := p.DPoP.Nonce(); n != "" {
		w.Header().Set(dpop.NonceHeader, n)
	}
}

// tokenProof checks the token request's DPoP proof, if any, and returns ctx
// binding the tokens to be issued to its key (and the key's thumbprint, ""
// without a proof). A request with a bad proof is answered here (ok false)
// and nothing else of it is looked at.
func (p *Provider) tokenProof(ctx context.Context, w http.ResponseWriter, r *http.Request) (_ context.Context, jkt string, ok bool) {
	jkt, ok = p.endpointProof(ctx, w, r, "/oauth2/token")
	return store.WithBoundKey(ctx, jkt), jkt, ok
}

// endpointProof checks the DPoP proof, if any, of a request to the
// client-facing endpoint at path (token, introspection, revocation) and
// returns its key's thumbprint ("" without a proof). A request with a bad
// proof is answered here, in the token endpoint's error format (ok false).
// In a pipelined unit in ctx the proof's jti is recorded with the unit.
func (p *Provider) endpointProof(ctx context.Context, w http.ResponseWriter, r *http.Request, path string) (jkt string, ok bool) {
	proof, err := dpop.FromHeader(r.Header)
	if err == nil && proof != "" {
		var pr dpop.Proof
		pr, err = p.DPoP.Check(ctx, proof, dpop.Request{Method: r.Method, URL: p.Issuer + path})
		jkt = pr.JKT
	}
	p.setNonce(w)
	if errors.Is(err, dpop.ErrUseNonce) {
		p.OAuth2.WriteAccessError(ctx, w, nil, errUseDPoPNonce)
		return "", false
	}
	if errors.Is(err, dpop.ErrInvalid) {
		p.OAuth2.WriteAccessError(ctx, w, nil, errInvalidDPoPProof(err))
		return "", false
	}
	if err != nil {
		err = p.oauthError(ctx, w, fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
		p.logServerError(ctx, strings.TrimPrefix(path, "/oauth2/")+": dpop", err)
		p.OAuth2.WriteAccessError(ctx, w, nil, err)
		return "", false
	}
	return jkt, true
}

// requiresDPoP reports whether c gets tokens only with a proof.
func requiresDPoP(c fosite.Client) bool {
	cl, ok := c.(*clients.Client)
	return ok && cl.DPoPBoundAccessTokens
}

// errDPoPRequired refuses a token request without a proof from a client
// registered with dpop_bound_access_tokens (RFC 9449 §5.2).
var errDPoPRequired = fosite.ErrInvalidRequest.WithHint(
	"This client is registered with dpop_bound_access_tokens: the token request needs a DPoP proof.")

// accessToken is the access token a resource request presents and the
// scheme it uses: "DPoP" or "Bearer" in the Authorization header, or
// Bearer as access_token in a form body (RFC 6750 §2.2).
func accessToken(r *http.Request) (scheme, token string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		s, t, found := strings.Cut(auth, " ")
		if !found {
			return "", ""
		}
		switch {
		case strings.EqualFold(s, "DPoP"):
			return "DPoP", strings.TrimSpace(t)
		case strings.EqualFold(s, "Bearer"):
			return "Bearer", strings.TrimSpace(t)
		}
		return "", ""
	}
	if t := fosite.AccessTokenFromRequest(r); t != "" {
		return "Bearer", t
	}
	return "", ""
}

// resourceProof checks a resource request's use of its token: a bound one
// needs the DPoP scheme and a proof by its key for this request and token,
// an unbound one the Bearer scheme. It returns the error code and text for
// WWW-Authenticate, "" when the request may go on.
func (p *Provider) resourceProof(ctx context.Context, r *http.Request, path, scheme, token, bound string) (code, desc string, err error) {
	if bound == "" {
		if scheme == "DPoP" {
			return "invalid_token", "The access token is not DPoP-bound: present it as a Bearer token.", nil
		}
		return "", "", nil
	}
	if scheme != "DPoP" {
		return "invalid_token", "The access token is DPoP-bound: present it with the DPoP scheme and a proof.", nil
	}
	proof, err := dpop.FromHeader(r.Header)
	if err == nil && proof == "" {
		return "invalid_dpop_proof", "A DPoP proof is required with this access token.", nil
	}
	var pr dpop.Proof
	if err == nil {
		pr, err = p.DPoP.Check(ctx, proof, dpop.Request{Method: r.Method, URL: p.Issuer + path, AccessToken: token})
	}
	if errors.Is(err, dpop.ErrUseNonce) {
		return "use_dpop_nonce", errUseDPoPNonce.DescriptionField, nil
	}
	if errors.Is(err, dpop.ErrInvalid) {
		return "invalid_dpop_proof", errInvalidDPoPProof(err).DescriptionField, nil
	}
	if err != nil {
		return "", "", err
	}
	if subtle.ConstantTimeCompare([]byte(pr.JKT), []byte(bound)) != 1 {
		return "invalid_dpop_proof", "The DPoP proof is signed by another key than the one the access token is bound to.", nil
	}
	return "", "", nil
}

// dpopChallenge answers a resource request refused for its DPoP use
// (RFC 9449 §7.1).
func dpopChallenge(w http.ResponseWriter, code, desc string) {
	w.Header().Set("WWW-Authenticate", `DPoP error="`+code+`", error_description="`+desc+`", algs="`+strings.Join(dpop.AlgNames(), " ")+`"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "error_description": desc})
}

// revokeKeyCheck is a revocation handler, run before fosite's: a public
// client's DPoP-bound refresh token is revoked only with a proof by the
// key it is bound to (RFC 9449 §5: without a secret, the key is all that
// makes the token the client's), as it is refreshed only so. The revoke
// endpoint puts the proof's key in ctx (store.WithBoundKey) and the store
// refuses a token bound to another with store.ErrWrongKey; fosite's handler
// would read that as a storage failure and answer 200, so this one refuses
// first, before anything is revoked.
type revokeKeyCheck struct {
	store    *store.Store
	strategy oauth2.RefreshTokenStrategy
}

// revokeKeyCheckFactory is a compose.Factory for revokeKeyCheck.
func revokeKeyCheckFactory(_ fosite.Configurator, storage, strategy any) any {
	return &revokeKeyCheck{store: storage.(*store.Store), strategy: strategy.(oauth2.RefreshTokenStrategy)}
}

var _ fosite.RevocationHandler = (*revokeKeyCheck)(nil)

// RevokeToken implements fosite.RevocationHandler. It answers
// fosite.ErrUnknownRequest when the revocation may go on: only a public
// client's own tokens can be bound without a secret behind them (a
// confidential client's are revoked on its authentication, and another
// client's are refused by fosite's handler).
func (h *revokeKeyCheck) RevokeToken(ctx context.Context, token string, _ fosite.TokenType, client fosite.Client) error {
	if !client.IsPublic() {
		return fosite.ErrUnknownRequest
	}
	_, err := h.store.GetRefreshTokenSession(ctx, h.strategy.RefreshTokenSignature(ctx, token), nil)
	if errors.Is(err, store.ErrWrongKey) {
		return errInvalidDPoPProof(errors.New("the refresh token is bound to a DPoP key: revoke it with a proof of that key")).WithWrap(err)
	}
	return fosite.ErrUnknownRequest
}
