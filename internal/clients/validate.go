package clients

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	jose4 "github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/netguard"
)

var validID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Grant types a client may be given. The implicit and password grants are
// gone from OAuth 2.1 and the security BCP (RFC 9700), and so is every
// response type but code.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	// GrantDeviceCode is the device authorization grant (RFC 8628).
	GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"
)

var (
	allowedGrants = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantDeviceCode}
	refusedGrants = map[string]string{
		"implicit": "the implicit grant leaks tokens in URLs and is removed by OAuth 2.1 (RFC 9700 §2.1.2); use authorization_code with PKCE",
		"password": "the resource owner password grant hands passwords to the client and is removed by OAuth 2.1 (RFC 9700 §2.4); use authorization_code",
		"hybrid":   "hybrid flows return tokens from the authorization endpoint; use authorization_code",
	}
	// DefaultScopes are what a client may request when none are given.
	DefaultScopes = []string{"openid", "profile", "email", "offline_access"}
	// Algorithms an ID token may be signed with.
	idTokenAlgs = []string{"RS256", "ES256"}
)

// normalize fills defaults into c and checks it, returning ErrInvalid
// wrapping every problem found, so one attempt shows all of them. A
// back-channel logout URI on this host, a private network or a link-local
// address is refused unless allowPrivateBackchannel (see netguard).
func normalize(c *Client, allowPrivateBackchannel bool) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if !validID.MatchString(c.ID) {
		bad("client id %q must be 1 to 64 characters of A-Z a-z 0-9 . _ -", c.ID)
	}
	c.Name = strings.TrimSpace(c.Name)

	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
	}
	c.GrantTypes = dedupe(c.GrantTypes)
	for _, g := range c.GrantTypes {
		if why, ok := refusedGrants[g]; ok {
			bad("grant type %q is not supported: %s", g, why)
		} else if !slices.Contains(allowedGrants, g) {
			bad("unknown grant type %q (allowed: %s)", g, strings.Join(allowedGrants, ", "))
		}
	}
	code := slices.Contains(c.GrantTypes, GrantAuthorizationCode)
	if slices.Contains(c.GrantTypes, GrantRefreshToken) && !code && !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		bad("grant type refresh_token needs authorization_code or %s: refresh tokens are issued only with a code or to a device", GrantDeviceCode)
	}
	if c.Public && slices.Contains(c.GrantTypes, GrantClientCredentials) {
		bad("a public client cannot use client_credentials: it has no secret to authenticate with")
	}
	if why := serviceAccountProblem(*c); c.AdminServiceAccount && why != "" {
		bad("%s", why)
	}

	if len(c.ResponseTypes) == 0 {
		c.ResponseTypes = []string{"code"}
	}
	c.ResponseTypes = dedupe(c.ResponseTypes)
	if !slices.Equal(c.ResponseTypes, []string{"code"}) {
		bad("response types %q are not supported: only \"code\" (OAuth 2.1 drops the implicit and hybrid response types)", c.ResponseTypes)
	}

	c.RedirectURIs = dedupe(c.RedirectURIs)
	if code && len(c.RedirectURIs) == 0 {
		bad("at least one redirect URI is needed for authorization_code")
	}
	for _, u := range c.RedirectURIs {
		if why := checkURI(u); why != "" {
			bad("redirect URI %q %s", u, why)
		}
	}
	c.PostLogoutRedirectURIs = dedupe(c.PostLogoutRedirectURIs)
	for _, u := range c.PostLogoutRedirectURIs {
		if why := checkURI(u); why != "" {
			bad("post-logout redirect URI %q %s", u, why)
		}
	}
	c.BackchannelLogoutURI = strings.TrimSpace(c.BackchannelLogoutURI)
	if c.BackchannelLogoutURI != "" {
		if why := checkURI(c.BackchannelLogoutURI); why != "" {
			bad("back-channel logout URI %q %s", c.BackchannelLogoutURI, why)
		} else if u, _ := url.Parse(c.BackchannelLogoutURI); !allowPrivateBackchannel && netguard.InternalHost(u.Hostname()) {
			bad("back-channel logout URI %q is on this host, a private network or a link-local address, where the provider "+
				"does not post unless the operator allows it (IDP_ALLOW_PRIVATE_BACKCHANNEL=true, for demos and tests)",
				c.BackchannelLogoutURI)
		}
	}

	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	}
	if c.AdminServiceAccount {
		c.Scopes = append(c.Scopes, AdminScope)
	}
	c.Scopes = dedupe(c.Scopes)
	for _, s := range c.Scopes {
		if !validScope(s) {
			bad("scope %q is not a valid scope token (RFC 6749 §3.3: printable ASCII, no spaces, quotes or backslashes)", s)
		}
	}
	c.Audience = dedupe(c.Audience)
	for _, a := range c.Audience {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " \t\r\n") {
			bad("audience %q must be non-empty and contain no spaces", a)
		}
	}

	problems = append(problems, normalizeAuth(c, allowPrivateBackchannel)...)
	problems = append(problems, normalizeAccessToken(c)...)

	if c.IDTokenAlg == "" {
		c.IDTokenAlg = "RS256"
	}
	if !slices.Contains(idTokenAlgs, c.IDTokenAlg) {
		bad("ID token algorithm %q is not supported (allowed: %s)", c.IDTokenAlg, strings.Join(idTokenAlgs, ", "))
	}

	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// checkURI returns why u is not acceptable as a redirect or logout URI, or
// "". Redirect URIs are matched exactly (no wildcards), must be absolute,
// carry no fragment, and use https — or http only to a loopback address,
// where a native app or a developer's machine listens (RFC 9700 §4.1.1,
// OAuth 2.1 §2.3.1, RFC 8252 §7.3).
func checkURI(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "is not a valid URL"
	}
	switch {
	case !p.IsAbs() || p.Host == "":
		return "must be an absolute URL with a host, like https://app.example.com/callback"
	case strings.Contains(u, "#"):
		return "must not contain a fragment (#)"
	case p.User != nil:
		return "must not contain user information"
	case strings.Contains(p.Host, "*"):
		return "must not contain a wildcard: redirect URIs are matched exactly"
	case p.Scheme == "https":
		return ""
	case p.Scheme == "http" && IsLoopback(p.Hostname()):
		return ""
	case p.Scheme == "http":
		return "must use https (http is allowed only for localhost, 127.0.0.1 and [::1])"
	default:
		return fmt.Sprintf("has scheme %q: only https, or http for loopback hosts, is allowed", p.Scheme)
	}
}

// IsLoopback reports whether host names this machine's loopback
// interface, where an http redirect URI is allowed.
func IsLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// validScope checks an RFC 6749 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// dedupe drops repeated and empty values, keeping the first order. A nil or
// empty input gives an empty, non-nil slice, so text[] columns get '{}'.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		v = strings.TrimSpace(v)
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// AssertionAlgs are the algorithms a private_key_jwt client may sign its
// assertions with: asymmetric ones (RFC 7523 with a registered public
// key; client_secret_jwt, with HMAC, is not supported).
var AssertionAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Limits on a client's keys, registered or fetched.
const (
	MaxJWKSBytes = 64 << 10
	maxJWKSKeys  = 20
)

// normalizeAuth fills and checks how c authenticates at the token
// endpoint, returning the problems found.
func normalizeAuth(c *Client, allowPrivate bool) (problems []string) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	switch c.TokenEndpointAuthMethod {
	case "":
		c.TokenEndpointAuthMethod = "client_secret_basic"
		if c.Public {
			c.TokenEndpointAuthMethod = "none"
		}
	case "client_secret_basic", "client_secret_post":
		// Either way of sending the secret is accepted from every client
		// with one.
		c.TokenEndpointAuthMethod = "client_secret_basic"
		if c.Public {
			bad("a public client has no secret: its token_endpoint_auth_method is none")
		}
	case "none":
		if !c.Public {
			bad("token_endpoint_auth_method none is for public clients (--public)")
		}
	case PrivateKeyJWT:
		if c.Public {
			bad("a public client cannot use private_key_jwt: it authenticates with nothing")
		}
	case "client_secret_jwt":
		bad("token_endpoint_auth_method client_secret_jwt is not supported: use private_key_jwt or a client secret")
	default:
		bad("unknown token_endpoint_auth_method %q (allowed: client_secret_basic, client_secret_post, private_key_jwt, none)", c.TokenEndpointAuthMethod)
	}
	if c.TokenEndpointAuthMethod != PrivateKeyJWT {
		if len(c.JWKS) > 0 || c.JWKSURI != "" || c.TokenEndpointAuthSigningAlg != "" {
			bad("jwks, jwks_uri and token_endpoint_auth_signing_alg are for token_endpoint_auth_method private_key_jwt")
		}
		return problems
	}
	if c.TokenEndpointAuthSigningAlg == "" {
		c.TokenEndpointAuthSigningAlg = "RS256"
	}
	if !slices.Contains(AssertionAlgs, c.TokenEndpointAuthSigningAlg) {
		bad("token_endpoint_auth_signing_alg %q is not supported (allowed: %s)", c.TokenEndpointAuthSigningAlg, strings.Join(AssertionAlgs, ", "))
		return problems
	}
	c.JWKSURI = strings.TrimSpace(c.JWKSURI)
	switch {
	case len(c.JWKS) > 0 && c.JWKSURI != "":
		bad("give the client's keys as jwks or at jwks_uri, not both")
	case len(c.JWKS) == 0 && c.JWKSURI == "":
		bad("a private_key_jwt client needs its public keys: --jwks JSON or --jwks-uri URL")
	case c.JWKSURI != "":
		if why := checkURI(c.JWKSURI); why != "" {
			bad("jwks_uri %q %s", c.JWKSURI, why)
		} else if u, _ := url.Parse(c.JWKSURI); !allowPrivate && netguard.InternalHost(u.Hostname()) {
			bad("jwks_uri %q is on this host, a private network or a link-local address, where the provider "+
				"does not fetch unless the operator allows it (IDP_ALLOW_PRIVATE_BACKCHANNEL=true, for demos and tests)", c.JWKSURI)
		}
	default:
		set, err := ParseJWKS(c.JWKS, c.TokenEndpointAuthSigningAlg)
		if err != nil {
			bad("jwks: %v", err)
		} else {
			c.JWKS = set
		}
	}
	return problems
}

// ParseJWKS checks a client's key set for assertions signed with alg and
// returns it as stored: public keys only, each marked for signatures
// (fosite uses only keys with use "sig"), at least one of them fit for alg.
func ParseJWKS(raw []byte, alg string) (json.RawMessage, error) {
	if len(raw) > MaxJWKSBytes {
		return nil, fmt.Errorf("more than %d bytes", MaxJWKSBytes)
	}
	var set jose4.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set (RFC 7517 §5): %v", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("it must hold 1 to %d keys, not %d", maxJWKSKeys, len(set.Keys))
	}
	fit := false
	for i := range set.Keys {
		k := &set.Keys[i]
		switch {
		case !k.IsPublic():
			return nil, fmt.Errorf("key %d (kid %q) is a private key: register only the public part", i, k.KeyID)
		case k.Use == "":
			k.Use = "sig"
		case k.Use != "sig":
			return nil, fmt.Errorf("key %d (kid %q) has use %q: assertions need signature keys", i, k.KeyID, k.Use)
		}
		fit = fit || keyFits(k.Key, alg)
	}
	if !fit {
		return nil, fmt.Errorf("no key can verify %s (RS*/PS*: RSA of at least 2048 bits; ES256/384/512: EC on P-256/384/521)", alg)
	}
	return json.Marshal(set)
}

// keyFits reports whether key can verify signatures made with alg.
func keyFits(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return want != nil && k.Curve == want
	}
	return false
}
