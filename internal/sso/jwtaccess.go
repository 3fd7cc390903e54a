package sso

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/idp/idp/internal/sso/store"
)

// JWT access tokens (RFC 9068), per client (clients.AccessTokenJWT).
//
// Why a strategy of our own rather than fosite's oauth2.DefaultJWTStrategy:
// fosite's is one format for every client (the strategy is fixed at
// Compose), it needs a session type of its own (JWTSessionContainer, not
// the openid.DefaultSession every other path here stores), and it signs
// with go-jose v3. jwtAccessStrategy is fosite's HMAC strategy with one
// decision added: a token for a client registered with the jwt format is
// a JWT signed with the provider's keys (as ID and logout tokens are,
// go-jose v4), any other token is fosite's. Everything after generation is
// the same for both kinds: fosite stores the token under its signature
// (for a JWT, the JWS signature), so revocation, a revoke-all and
// introspection find and kill a JWT exactly as an opaque token.
type jwtAccessStrategy struct {
	oauth2.CoreStrategy // HMAC: codes, refresh tokens and opaque access tokens
	issuer              string
	keys                *keys.Set
	now                 func() time.Time
}

// AccessTokenType is the typ of a JWT access token's header (RFC 9068 §2.1).
const AccessTokenType = "at+jwt"

// accessClaims are a JWT access token's claims (RFC 9068 §2.2, with sid,
// auth_time, acr and amr from the SSO session, and cnf of a DPoP binding).
type accessClaims struct {
	josejwt.Claims
	ClientID string            `json:"client_id"`
	Scope    string            `json:"scope,omitempty"`
	SID      string            `json:"sid,omitempty"`
	AuthTime int64             `json:"auth_time,omitempty"`
	ACR      string            `json:"acr,omitempty"`
	AMR      []string          `json:"amr,omitempty"`
	CNF      map[string]string `json:"cnf,omitempty"`
}

// isJWT tells a JWT (three dot-separated parts) from fosite's HMAC tokens
// (key.signature); nothing else reaches the strategy from a store lookup.
func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

// AccessTokenSignature implements oauth2.AccessTokenStrategy: what the
// token is stored under.
func (s *jwtAccessStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	if isJWT(token) {
		return token[strings.LastIndexByte(token, '.')+1:]
	}
	return s.CoreStrategy.AccessTokenSignature(ctx, token)
}

// GenerateAccessToken implements oauth2.AccessTokenStrategy.
func (s *jwtAccessStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	c, ok := r.GetClient().(*clients.Client)
	if !ok || !c.JWTAccessTokens() {
		return s.CoreStrategy.GenerateAccessToken(ctx, r)
	}
	exp := r.GetSession().GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		return "", "", errors.New("sso: jwt access token: no expiry set")
	}
	alg := c.IDTokenAlg
	if alg == "" {
		alg = "RS256"
	}
	kid, key, err := s.keys.Signer(alg)
	if err != nil {
		return "", "", fmt.Errorf("sso: jwt access token: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: cryptosigner.Opaque(key), KeyID: kid}},
		(&jose.SignerOptions{}).WithType(AccessTokenType))
	if err != nil {
		return "", "", fmt.Errorf("sso: jwt access token: %w", err)
	}
	now := s.now().Truncate(time.Second)
	claims := accessClaims{
		Claims: josejwt.Claims{
			Issuer:   s.issuer,
			Subject:  r.GetSession().GetSubject(),
			Audience: josejwt.Audience(tokenAudience(r, c)),
			Expiry:   josejwt.NewNumericDate(exp),
			IssuedAt: josejwt.NewNumericDate(now),
			ID:       rand.Text(),
		},
		ClientID: c.ID,
		Scope:    strings.Join(r.GetGrantedScopes(), " "),
	}
	if claims.Subject == "" {
		// No resource owner (client_credentials): the client is the
		// subject (RFC 9068 §2.2).
		claims.Subject = c.ID
	}
	if sess, ok := r.GetSession().(openid.Session); ok && sess.IDTokenClaims() != nil {
		id := sess.IDTokenClaims()
		claims.SID, _ = id.Extra["sid"].(string)
		if !id.AuthTime.IsZero() {
			claims.AuthTime = id.AuthTime.Unix()
		}
		claims.ACR, claims.AMR = id.AuthenticationContextClassReference, id.AuthenticationMethodsReferences
	}
	if jkt := store.BoundKeyIn(ctx); jkt != "" {
		claims.CNF = map[string]string{"jkt": jkt}
	}
	token, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("sso: jwt access token: %w", err)
	}
	return token, s.AccessTokenSignature(ctx, token), nil
}

// ValidateAccessToken implements oauth2.AccessTokenStrategy; fosite calls
// it with the request it found stored under the token's signature, so a
// JWT it gets here was issued and is not revoked. What is left is that the
// JWT is ours, whole, and not expired.
func (s *jwtAccessStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if !isJWT(token) {
		return s.CoreStrategy.ValidateAccessToken(ctx, r, token)
	}
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].ExtraHeaders[jose.HeaderType] != AccessTokenType {
		return fosite.ErrTokenSignatureMismatch.WithHint("The access token is not a JWT access token of this provider.")
	}
	pub, ok := s.keys.PublicKey(tok.Headers[0].KeyID)
	if !ok {
		return fosite.ErrTokenSignatureMismatch.WithHint("The access token was signed by an unknown key.")
	}
	var c accessClaims
	if err := tok.Claims(pub, &c); err != nil {
		return fosite.ErrTokenSignatureMismatch.WithHint("The access token's signature is invalid.")
	}
	if c.Expiry == nil || !s.now().Before(c.Expiry.Time()) {
		return fosite.ErrTokenExpired.WithHint("The access token expired.")
	}
	return nil
}

// tokenAudience is a JWT access token's aud: the resources of the token
// request (RFC 8707 §2.2; checked by resourceProblem), else the audience
// granted (the authorization's resources and audience), else the client's
// registered audience, else the client itself.
func tokenAudience(r fosite.Requester, c *clients.Client) []string {
	if res := r.GetRequestForm()["resource"]; len(res) > 0 {
		return res
	}
	if aud := r.GetGrantedAudience(); len(aud) > 0 {
		return aud
	}
	if len(c.Audience) > 0 {
		return c.Audience
	}
	return []string{c.ID}
}

// errInvalidTarget is RFC 8707 §2's error, in fosite's format.
func errInvalidTarget(desc string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "invalid_target", CodeField: http.StatusBadRequest,
		DescriptionField: "The requested resource is invalid, unknown, or not allowed: " + desc + "."}
}

// resourceProblem checks the resource indicators of a request (RFC 8707):
// each one an absolute URI the client is registered for (its audience)
// and, with within (the audience an earlier authorization granted, for a
// code exchange or a refresh), one of those. nil without any.
func resourceProblem(r fosite.Requester, within []string) error {
	res := r.GetRequestForm()["resource"]
	if len(res) == 0 {
		return nil
	}
	c, ok := r.GetClient().(*clients.Client)
	if !ok {
		return errInvalidTarget("this client may ask for no resource")
	}
	for _, v := range res {
		if why := c.ResourceProblem(v); why != "" {
			return errInvalidTarget(why)
		}
		if within != nil && !slices.Contains(within, v) {
			return errInvalidTarget(fmt.Sprintf("resource %q was not part of the authorization", v))
		}
	}
	return nil
}

// tokenResources checks the token request's resource indicators: a
// client_credentials request is granted them (they are its audience); a
// code exchange, a refresh or a device grant may only narrow the JWT's
// aud to some of what its authorization granted.
func tokenResources(ar fosite.AccessRequester) error {
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		if err := resourceProblem(ar, nil); err != nil {
			return err
		}
		for _, v := range ar.GetRequestForm()["resource"] {
			ar.GrantAudience(v)
		}
		return nil
	}
	// A code's authorization granted what it requested, resources
	// included (authorize); fosite's code handler copies its requested
	// audience here and grants it only later. A refresh or a device grant
	// has it granted already.
	within := append(append([]string{}, ar.GetRequestedAudience()...), ar.GetGrantedAudience()...)
	return resourceProblem(ar, within)
}
