package sso

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clients"
)

// Client authentication, at every endpoint that asks for it (token, PAR,
// introspection, revocation):
//
//   - private_key_jwt (RFC 7523 §2.2): fosite's own check of the
//     assertion (the client's registered or published key, the client's
//     one algorithm, iss and sub the client, exp, jti once, through the
//     store's oauth_client_assertion_jti on every instance), after ours
//     of its audience: the token endpoint or the issuer (RFC 7523 §3 and
//     the FAPI 2.0 profile), checked first so that a refused assertion
//     leaves no jti behind. Every refusal is invalid_client (§3.2);
//     fosite says jti_known or invalid_request for some.
//   - a client secret, by HTTP Basic or in the body (both from every
//     client with a secret), or nothing from a public client: checked
//     here, since fosite would hold each client to one of these ways.

// clientAuth is fosite's ClientAuthenticationStrategy.
type clientAuth struct {
	f        *fosite.Fosite
	audience []string // the token endpoint and the issuer
}

func (a *clientAuth) authenticate(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if form.Get("client_assertion_type") != "" || form.Get("client_assertion") != "" {
		return a.assertion(ctx, r, form)
	}
	return a.secret(ctx, r, form)
}

// maxAssertionLifetime is how far in the future a client assertion's exp
// may be.
const maxAssertionLifetime = time.Hour

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func (a *clientAuth) assertion(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if form.Get("client_assertion_type") != jwtBearer {
		return nil, fosite.ErrInvalidClient.WithHintf("client_assertion_type must be %s.", jwtBearer)
	}
	if _, _, basic := r.BasicAuth(); basic || form.Get("client_secret") != "" {
		return nil, fosite.ErrInvalidRequest.WithHint("A client authenticates one way per request: an assertion or a secret, not both.")
	}
	if err := a.precheck(form.Get("client_assertion")); err != nil {
		return nil, err
	}
	c, err := a.f.DefaultClientAuthenticationStrategy(ctx, r, form)
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.CodeField >= 500 {
			return nil, err
		}
		if errors.Is(err, fosite.ErrJTIKnown) {
			return nil, fosite.ErrInvalidClient.WithHint("This client assertion was used before: its jti may be used only once.").WithWrap(err)
		}
		if rfc.ErrorField != fosite.ErrInvalidClient.ErrorField {
			return nil, fosite.ErrInvalidClient.WithHint(rfc.GetDescription()).WithWrap(err).WithDebug(rfc.GetDescription())
		}
		return nil, err
	}
	return c, nil
}

// precheck refuses an assertion that is not for this provider, or not
// (or no longer) valid, before its signature is checked and its jti kept:
// its claims are read without trusting them, and one that passes still
// goes through fosite's checks. (fosite's own expiry check fails with an
// error that is not an OAuth error at all.)
func (a *clientAuth) precheck(raw string) error {
	tok, err := josejwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return fosite.ErrInvalidClient.WithHint("The client_assertion is not a signed JWT with an asymmetric algorithm (" +
			"RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512).")
	}
	var c josejwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return fosite.ErrInvalidClient.WithHint("The client_assertion's claims could not be read.")
	}
	if c.Expiry == nil {
		return fosite.ErrInvalidClient.WithHint("The client_assertion has no exp.")
	}
	// fosite checks by the wall clock, without leeway; so does this.
	now := time.Now()
	if err := c.ValidateWithLeeway(josejwt.Expected{Time: now}, 0); err != nil {
		return fosite.ErrInvalidClient.WithHintf("The client_assertion is not valid now: %v.", err)
	}
	// Its jti is kept until it expires (RFC 7523 §3 lets us refuse an
	// exp unreasonably far off).
	if c.Expiry.Time().After(now.Add(maxAssertionLifetime)) {
		return fosite.ErrInvalidClient.WithHintf("The client_assertion's exp is more than %s away; sign short-lived assertions.", maxAssertionLifetime)
	}
	for _, aud := range c.Audience {
		if slices.Contains(a.audience, aud) {
			return nil
		}
	}
	return fosite.ErrInvalidClient.WithHintf("The client_assertion's aud must name this provider's token endpoint (%s) or its issuer (%s).",
		a.audience[0], a.audience[1])
}

var assertionAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(clients.AssertionAlgs))
	for i, a := range clients.AssertionAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// secret authenticates a client by its secret, sent with HTTP Basic
// (RFC 6749 §2.3.1: client id and secret form-encoded) or in the body,
// or a public client by its id alone.
func (a *clientAuth) secret(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return nil, fosite.ErrInvalidRequest.WithHint("The client credentials in the HTTP Authorization header could not be decoded from 'application/x-www-form-urlencoded'.")
		}
	}
	if id == "" {
		return nil, fosite.ErrInvalidRequest.WithHint("Client credentials missing or malformed in both HTTP Authorization header and HTTP POST body.")
	}
	fc, err := a.f.Store.GetClient(ctx, id)
	if err != nil {
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error())
		}
		return nil, fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	if c, ok := fc.(*clients.Client); ok && c.TokenEndpointAuthMethod == clients.PrivateKeyJWT {
		return nil, fosite.ErrInvalidClient.WithHint("This client authenticates with private_key_jwt: send a client_assertion.")
	}
	if fc.IsPublic() {
		return fc, nil
	}
	if err := a.f.Config.GetSecretsHasher(ctx).Compare(ctx, fc.GetHashedSecret(), []byte(secret)); err != nil {
		return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error())
	}
	return fc, nil
}

// tokenURLs is fosite's configuration with the audiences a client
// assertion may name: the token endpoint, and the issuer (fosite's own
// takes the token endpoint only). Client authentication is the only
// reader.
type tokenURLs struct {
	*fosite.Config
	urls []string
}

func (c tokenURLs) GetTokenURLs(context.Context) []string { return c.urls }
