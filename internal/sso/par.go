package sso

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/sso/dpop"
)

// Pushed authorization requests (RFC 9126). An app posts its
// authorization request to /oauth2/par, authenticated as at the token
// endpoint, and gets a request_uri, valid for PARLifetime, to send the
// browser to the authorization endpoint with (client_id and request_uri
// only): the parameters never travel through the browser, and nobody but
// the app can have made them. fosite validates the push and reads the
// request back (store.GetPARSession consumes it: single use, bound to the
// client); this file adds what fosite leaves out, and carries a consumed
// request through a sign-in or a consent page as a fresh request_uri
// (continue), never as plain parameters, so a client that must use PAR
// (clients.Client.RequirePAR) is never asked to accept them.

// parPrefix starts every request_uri this provider issues (RFC 9126 §2.2).
const parPrefix = "urn:ietf:params:oauth:request_uri:"

// pushed reports whether the authorization request in form came through
// PAR: it names a request_uri of ours. (Any other request_uri is refused
// before fosite sees it, see requestObjectProblem.)
func pushed(form url.Values) bool {
	return strings.HasPrefix(form.Get("request_uri"), parPrefix)
}

// pushAuthorize is the pushed authorization request endpoint.
func (p *Provider) pushAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		p.pushError(ctx, w, nil, fosite.ErrInvalidRequest.WithHint("The request body could not be read as a form."))
		return
	}
	if err := pushProblem(r); err != nil {
		p.pushError(ctx, w, nil, err)
		return
	}
	uctx, unit := p.Store.Pipeline(ctx)
	ar, err := p.OAuth2.NewPushedAuthorizeRequest(uctx, r)
	if err == nil {
		err = pkceProblem(ar)
	}
	if err == nil {
		err = resourceProblem(ar, nil)
	}
	if err == nil {
		err = dpopJKTProblem(ar)
	}
	if err == nil {
		err = p.pushProof(uctx, w, r, ar)
	}
	var resp fosite.PushedAuthorizeResponder
	if err == nil {
		// Only the parameters the provider knows are kept: they are what the
		// authorization endpoint will act on (client authentication, for
		// one, is gone).
		form := ar.GetRequestForm()
		for k := range form {
			if _, ok := authorizeParams[k]; !ok {
				delete(form, k)
			}
		}
		resp, err = p.OAuth2.NewPushedAuthorizeResponse(uctx, ar, openid.NewDefaultSession())
	}
	if err != nil {
		// The client assertion a refused push was authenticated with is
		// spent all the same, as at the token endpoint; nothing else waits.
		if cerr := unit.Commit(uctx); cerr != nil && !errors.Is(cerr, fosite.ErrJTIKnown) && !errors.Is(cerr, dpop.ErrReplayed) {
			p.Logger.ErrorContext(ctx, "par: commit after a failed request", "request_id", ops.RequestID(ctx), "err", cerr)
		}
		p.pushError(ctx, w, ar, err)
		return
	}
	if err := unit.Commit(uctx); err != nil {
		p.pushError(ctx, w, ar, commitError(err))
		return
	}
	p.OAuth2.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// pushProblem is what fosite would not refuse in a push, or nil: a
// request object (not supported), a client_id in the body naming another
// client than the one authenticated with HTTP Basic (fosite would store
// the request for the client in the body), a parameter too long.
func pushProblem(r *http.Request) error {
	if r.Form.Get("request") != "" {
		return fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; push the parameters themselves.")
	}
	if id, _, ok := r.BasicAuth(); ok {
		if basic, err := url.QueryUnescape(id); err == nil && r.Form.Get("client_id") != "" && r.Form.Get("client_id") != basic {
			return fosite.ErrInvalidRequest.WithHint("The client_id in the body is not the client that authenticated.")
		}
	}
	if name, _ := oversizeParam(r.Form); name != "" {
		return fosite.ErrInvalidRequest.WithHintf("The parameter %s is too long.", name)
	}
	return nil
}

func (p *Provider) pushError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	err = p.oauthError(ctx, w, err)
	p.logServerError(ctx, "par", err)
	if fosite.ErrorToRFC6749Error(err).ErrorField == fosite.ErrInvalidClient.ErrorField {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+p.Issuer+`"`)
	}
	if ar == nil {
		ar = fosite.NewAuthorizeRequest()
	}
	p.OAuth2.WritePushedAuthorizeError(ctx, w, ar, err)
}

// requestObjectProblem refuses what the authorization endpoint does not
// take: request objects, by value or by a reference that is not a pushed
// request of ours (fosite would fetch it from the web).
func requestObjectProblem(form url.Values) error {
	if form.Get("request") != "" {
		return fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; use a pushed authorization request.")
	}
	if uri := form.Get("request_uri"); uri != "" && !strings.HasPrefix(uri, parPrefix) {
		return fosite.ErrRequestURINotSupported.WithHint("Only request_uri values from this provider's pushed authorization request endpoint are accepted.")
	}
	return nil
}

// onlyPushed drops from a pushed authorization request's form everything
// but client_id and request_uri (RFC 9126 §4: the pushed parameters are
// the request) and the consent page's decision, which its CSRF token
// guards.
func onlyPushed(form url.Values) {
	for k := range form {
		if k != "client_id" && k != "request_uri" && k != consentDecision {
			delete(form, k)
		}
	}
}

// requirePARProblem refuses a plain authorization request from a client
// that must push its requests.
func requirePARProblem(ar fosite.AuthorizeRequester) error {
	if c, ok := ar.GetClient().(*clients.Client); ok && c.RequirePAR && !pushed(ar.GetRequestForm()) {
		return fosite.ErrInvalidRequest.WithHint("This client must send its authorization requests through the pushed authorization request endpoint (RFC 9126).")
	}
	return nil
}

// resumption is the authorization request q (the known parameters of ar,
// as a sign-in or the consent page is to come back with) in the form it
// travels in: q itself, or, for a pushed request, a new request_uri under
// which q waits, as long as a sign-in may take.
func (p *Provider) resumption(ctx context.Context, ar fosite.AuthorizeRequester, q url.Values) (url.Values, error) {
	if !pushed(ar.GetRequestForm()) {
		return q, nil
	}
	orig, ok := ar.(*fosite.AuthorizeRequest)
	if !ok {
		return nil, errors.New("sso: a pushed request that is not a *fosite.AuthorizeRequest")
	}
	rest := *orig
	rest.Form = q
	uri := newRequestURI()
	uctx, unit := p.Store.Pipeline(ctx)
	if err := p.Store.SavePushedRequest(uctx, uri, &rest, p.Now().Add(continuationLifetime)); err != nil {
		unit.Rollback(uctx)
		return nil, err
	}
	if err := unit.Commit(uctx); err != nil {
		p.Logger.ErrorContext(ctx, "par: continuation", "request_id", ops.RequestID(ctx), "err", err)
		return nil, err
	}
	return url.Values{"client_id": {ar.GetClient().GetID()}, "request_uri": {uri}}, nil
}

// newRequestURI is a fresh request_uri: 256 random bits.
func newRequestURI() string {
	b := make([]byte, 32)
	rand.Read(b)
	return parPrefix + base64.RawURLEncoding.EncodeToString(b)
}
