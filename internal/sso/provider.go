// Package sso is the OpenID Provider: ory/fosite composed over our
// PostgreSQL storage, the authorization, token, introspection, revocation,
// userinfo, discovery, JWKS and end-session endpoints, and the glue between
// fosite's requests and the central SSO session.
package sso

import (
	"context"
	"log/slog"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/idp/idp/internal/sso/store"
	"github.com/idp/idp/internal/throttle"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// Lifetimes of what the provider issues.
type Lifetimes struct {
	AuthorizeCode time.Duration
	AccessToken   time.Duration
	RefreshToken  time.Duration
	IDToken       time.Duration
}

// DefaultLifetimes are short for codes and access tokens (they cannot be
// recalled from a resource server's cache) and long for refresh tokens,
// which die with their SSO session anyway.
var DefaultLifetimes = Lifetimes{
	AuthorizeCode: time.Minute,
	AccessToken:   10 * time.Minute,
	RefreshToken:  30 * 24 * time.Hour,
	IDToken:       10 * time.Minute,
}

// PARLifetime is how long a pushed authorization request waits for the
// browser to bring its request_uri (RFC 9126 §2.2 asks for a short time:
// the app sends the browser on at once).
const PARLifetime = 60 * time.Second

// continuationLifetime is how long the rest of a consumed pushed request
// waits for a sign-in or a consent decision: as long as a sign-in flow.
const continuationLifetime = 15 * time.Minute

// Provider serves the OpenID Provider endpoints.
type Provider struct {
	Issuer   string
	OAuth2   *fosite.Fosite // as Compose builds it: introspection authenticates clients with it
	Store    *store.Store
	Clients  *clients.Store
	Users    *users.Store
	Sessions *sessions.Manager
	Login    *login.Handler
	// Passkeys, when set, lets acr_values ask for a passkey.
	Passkeys  *passkey.Service
	Keys      *keys.Set
	Templates *web.Templates
	Errors    *pages.Errors
	Logger    *slog.Logger
	Now       func() time.Time
	// DPoP checks DPoP proofs (RFC 9449, dpopbind.go).
	DPoP *dpop.Checker
	// DeviceLimiter throttles wrong user codes on /device (device.go).
	DeviceLimiter *throttle.Limiter
	// DeviceCodeLifetime and DevicePollInterval are the device grant's
	// (RFC 8628); zero means DefaultDeviceCodeLifetime and
	// DefaultDevicePollInterval.
	DeviceCodeLifetime time.Duration
	DevicePollInterval time.Duration
	// Registration, when set, says whether dynamic client registration
	// (internal/registration) takes clients now: discovery names the
	// registration_endpoint only then.
	Registration func(context.Context) (bool, error)
}

// Compose builds fosite with exactly the grants we support: authorization
// code with PKCE (S256 only, required for public clients), refresh tokens
// with rotation, client credentials, OpenID Connect explicit flow (and ID
// tokens on refresh), the device authorization grant (ours, devicegrant.go),
// introspection and revocation. No implicit, hybrid or
// password grant: those factories are simply not listed.
//
// hmacSecret signs opaque tokens (at least 32 bytes); rotated ones still
// verify.
//
// An audience is a resource server's client id (see introspect), compared
// whole: fosite's default strategy reads audiences as URLs and grants any
// path below a registered one.
//
// jwks fetches the key sets private_key_jwt clients publish at their
// jwks_uri.
func Compose(issuer string, hmacSecret []byte, rotated [][]byte, life Lifetimes, st *store.Store, k *keys.Set, jwks fosite.JWKSFetcherStrategy) *fosite.Fosite {
	cfg := &fosite.Config{
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + "/oauth2/token",
		AuthorizeCodeLifespan:          life.AuthorizeCode,
		AccessTokenLifespan:            life.AccessToken,
		RefreshTokenLifespan:           life.RefreshToken,
		IDTokenLifespan:                life.IDToken,
		GlobalSecret:                   hmacSecret,
		RotatedGlobalSecrets:           rotated,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.ExactAudienceMatchingStrategy,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		// Every client with the refresh_token grant gets a refresh token;
		// whether it outlives the SSO session depends on offline_access
		// (see sessions.Revoke), not on whether one is issued.
		RefreshTokenScopes:         []string{},
		ClientSecretsHasher:        clients.SecretHasher{},
		SendDebugMessagesToClients: false,
		// fosite keeps only whitelisted form fields with a stored code; without
		// redirect_uri it silently skips the RFC 6749 §4.1.3 check that the
		// token request repeats the authorization request's redirect URI.
		// dpop_jkt binds the code to a DPoP key (dpopjkt.go).
		SanitationWhiteList: []string{"redirect_uri", dpopJKTParam},
		// PAR: a request_uri of our own prefix, short-lived; the redirect
		// URIs are the clients' registered ones (https, or http to a
		// loopback address), which fosite's own check would refuse for
		// 127.0.0.1.
		JWKSFetcherStrategy:             jwks,
		PushedAuthorizeRequestURIPrefix: parPrefix,
		PushedAuthorizeContextLifespan:  PARLifetime,
		RedirectSecureChecker: func(_ context.Context, u *url.URL) bool {
			return u.Scheme == "https" || (u.Scheme == "http" && clients.IsLoopback(u.Hostname()))
		},
	}
	signer := &keySigner{Keys: k}
	strategy := compose.CommonStrategy{
		// Opaque or JWT access tokens, per client (jwtaccess.go).
		CoreStrategy:               &jwtAccessStrategy{CoreStrategy: compose.NewOAuth2HMACStrategy(cfg), issuer: issuer, keys: k, now: time.Now},
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: signer, Config: cfg},
		Signer:                     signer,
	}
	// compose.Compose builds a *fosite.Fosite and returns it as an interface.
	f := compose.Compose(cfg, st, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		codeKeyCheckFactory, // after the code handler, before PKCE's
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenIntrospectionFactory,
		revokeKeyCheckFactory, // before fosite's revocation handler
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
		compose.PushedAuthorizeHandlerFactory,
		deviceGrantFactory,
	).(*fosite.Fosite)
	audience := []string{cfg.TokenURL, issuer}
	f.Config = tokenURLs{Config: cfg, urls: audience}
	cfg.ClientAuthenticationStrategy = (&clientAuth{f: f, audience: audience}).authenticate
	return f
}
