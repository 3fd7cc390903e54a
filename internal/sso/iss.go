package sso

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ory/fosite"
)

// Every response to a client's redirect URI names this provider in iss
// (RFC 9207), so a client that talks to several providers can tell which
// one answered and refuse a mix-up. fosite writes none; its writers are
// given an issWriter, which adds iss to the Location it sets, so success
// and every error (fosite's own, login_required, access_denied,
// consent_required) get it the same way.

// redirectResponse writes a successful authorization response.
func (p *Provider) redirectResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) {
	p.OAuth2.WriteAuthorizeResponse(ctx, &issWriter{ResponseWriter: w, iss: p.Issuer}, ar, resp)
}

// redirectError writes an authorization error to the client's redirect
// URI (fosite answers JSON when the request has no valid one; callers
// that may meet that go through authorizeError, which renders a page).
func (p *Provider) redirectError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	p.OAuth2.WriteAuthorizeError(ctx, &issWriter{ResponseWriter: w, iss: p.Issuer}, ar, err)
}

// issWriter adds iss to the Location of a redirect as it is written, in
// the part of the URI that carries the response: the query, or the
// fragment when the response is there.
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w *issWriter) WriteHeader(status int) {
	if status >= 300 && status < 400 {
		if loc := w.Header().Get("Location"); loc != "" {
			w.Header().Set("Location", withIssuer(loc, w.iss))
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *issWriter) Write(b []byte) (int, error) { return w.ResponseWriter.Write(b) }

// withIssuer is loc with iss set in its response parameters.
func withIssuer(loc, iss string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc // fosite built it from a registered URI; cannot happen
	}
	if u.Fragment != "" {
		f, err := url.ParseQuery(u.Fragment)
		if err == nil {
			f.Set("iss", iss)
			u.Fragment = f.Encode()
			return u.String()
		}
	}
	q := u.Query()
	q.Set("iss", iss)
	u.RawQuery = q.Encode()
	return u.String()
}
