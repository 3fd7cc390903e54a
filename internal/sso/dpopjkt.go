package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"regexp"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/store"
)

// Authorization code binding to a DPoP key (RFC 9449 §10): an
// authorization request's dpop_jkt, the thumbprint of the key the app
// will prove at the token endpoint, is kept with the code (fosite's
// sanitation whitelist, provider.go), and the code is exchanged only with
// a proof by that key. A code stolen from the redirect is then worthless
// without the app's key, even to a public client's impostor.

// dpopJKTParam is the authorization request parameter.
const dpopJKTParam = "dpop_jkt"

// jktForm is a JWK SHA-256 thumbprint: 32 bytes, base64url unpadded.
var jktForm = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// dpopJKTProblem refuses an authorization request whose dpop_jkt cannot be
// a thumbprint, at once rather than at the exchange.
func dpopJKTProblem(ar fosite.AuthorizeRequester) error {
	form := ar.GetRequestForm()
	if v, ok := form[dpopJKTParam]; ok && (len(v) != 1 || !jktForm.MatchString(v[0])) {
		return fosite.ErrInvalidRequest.WithHint("dpop_jkt must be one JWK SHA-256 thumbprint (RFC 7638), base64url without padding.")
	}
	return nil
}

// codeKeyCheck is a token endpoint handler, between fosite's code handler
// (which has found the code and checked it is this client's) and its PKCE
// handler (which spends the code's PKCE session): a code bound to a key
// is refused without a proof by that key, before anything is spent.
type codeKeyCheck struct {
	store    *store.Store
	strategy oauth2.AuthorizeCodeStrategy
}

// codeKeyCheckFactory is a compose.Factory for codeKeyCheck.
func codeKeyCheckFactory(_ fosite.Configurator, storage, strategy any) any {
	return &codeKeyCheck{store: storage.(*store.Store), strategy: strategy.(oauth2.AuthorizeCodeStrategy)}
}

var _ fosite.TokenEndpointHandler = (*codeKeyCheck)(nil)

// CanSkipClientAuth implements fosite.TokenEndpointHandler.
func (h *codeKeyCheck) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *codeKeyCheck) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne("authorization_code")
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler. It
// reads the code as fosite's handler just did (the store answers from
// that read, no round trip) and answers fosite.ErrUnknownRequest when the
// request may go on: the grant is the code handler's.
func (h *codeKeyCheck) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	code := r.GetRequestForm().Get("code")
	ar, err := h.store.GetAuthorizeCodeSession(ctx, h.strategy.AuthorizeCodeSignature(ctx, code), openid.NewDefaultSession())
	if err != nil && !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return fosite.ErrUnknownRequest // the code handler has answered for it
	}
	if ar == nil {
		return fosite.ErrUnknownRequest
	}
	want := ar.GetRequestForm().Get(dpopJKTParam)
	if want == "" {
		return fosite.ErrUnknownRequest
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(store.BoundKeyIn(ctx))) != 1 {
		return errInvalidDPoPProof(errors.New("the authorization code is bound to a DPoP key (dpop_jkt): exchange it with a proof by that key"))
	}
	return fosite.ErrUnknownRequest
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler:
// nothing to add.
func (h *codeKeyCheck) PopulateTokenEndpointResponse(context.Context, fosite.AccessRequester, fosite.AccessResponder) error {
	return fosite.ErrUnknownRequest
}

// pushProof binds a pushed authorization request to the key of its DPoP
// proof, if any (RFC 9449 §10.1): the request's dpop_jkt becomes the
// proof's thumbprint, and one that names another key is refused. The
// proof's jti is recorded with the push (uctx's unit).
func (p *Provider) pushProof(uctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester) error {
	proof, err := dpop.FromHeader(r.Header)
	if err == nil && proof == "" {
		return nil
	}
	p.setNonce(w)
	var pr dpop.Proof
	if err == nil {
		pr, err = p.DPoP.Check(uctx, proof, dpop.Request{Method: r.Method, URL: p.Issuer + "/oauth2/par"})
	}
	switch {
	case errors.Is(err, dpop.ErrUseNonce):
		return errUseDPoPNonce
	case errors.Is(err, dpop.ErrInvalid):
		return errInvalidDPoPProof(err)
	case err != nil:
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	form := ar.GetRequestForm()
	if have := form.Get(dpopJKTParam); have != "" && subtle.ConstantTimeCompare([]byte(have), []byte(pr.JKT)) != 1 {
		return errInvalidDPoPProof(errors.New("dpop_jkt names another key than the one the proof is signed with"))
	}
	form.Set(dpopJKTParam, pr.JKT)
	return nil
}
