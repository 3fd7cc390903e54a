package sso

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/dpop"
	"github.com/idp/idp/internal/sso/store"
	"github.com/idp/idp/internal/users"
)

// Mount registers the provider's endpoints.
func (p *Provider) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /oauth2/auth", p.authorize)
	mux.HandleFunc("POST /oauth2/auth", p.authorize)
	mux.HandleFunc("POST /oauth2/token", p.token)
	mux.HandleFunc("POST /oauth2/par", p.pushAuthorize)
	mux.HandleFunc("POST /oauth2/introspect", p.introspect)
	mux.HandleFunc("POST /oauth2/revoke", p.revoke)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /userinfo", p.userinfo)
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /.well-known/jwks.json", p.jwks)
	mux.HandleFunc("GET /oauth2/sessions/logout", p.endSession)
	mux.HandleFunc("POST /oauth2/sessions/logout", p.endSession)
	mux.HandleFunc("POST /oauth2/sessions/logout/confirm", p.confirmLogout)
	mux.HandleFunc("POST /oauth2/device/auth", p.deviceAuthorization)
	mux.HandleFunc("GET /device", p.deviceShow)
	mux.HandleFunc("POST /device", p.deviceEnter)
	mux.HandleFunc("POST /device/decision", p.deviceDecide)
}

// token is the token endpoint. fosite's storage calls go out in one unit
// of work (store.Store.Pipeline): a code exchange or a refresh costs two
// round trips.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	ctx, unit := p.Store.Pipeline(r.Context())
	// A DPoP proof binds the tokens issued here to its key (dpopbind.go);
	// its jti is recorded in the unit.
	ctx, jkt, ok := p.tokenProof(ctx, w, r)
	if !ok {
		unit.Rollback(ctx)
		return
	}
	ar, err := p.OAuth2.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		// A failed request's writes go out too: a PKCE session is spent by a
		// wrong verifier, as fosite intends.
		// A replayed DPoP proof fails the commit: the client's mistake,
		// answered with the request's own error.
		if cerr := unit.Commit(ctx); cerr != nil && !errors.Is(cerr, dpop.ErrReplayed) {
			p.Logger.ErrorContext(ctx, "token: commit after a failed request", "request_id", ops.RequestID(ctx), "err", cerr)
		}
		p.writeAccessError(ctx, w, ar, err)
		return
	}
	if jkt == "" && requiresDPoP(ar.GetClient()) {
		unit.Rollback(ctx)
		p.writeAccessError(ctx, w, ar, errDPoPRequired)
		return
	}
	if err := tokenResources(ar); err != nil {
		unit.Rollback(ctx)
		p.writeAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// fosite has checked the client may ask for these; admin is only
		// for admin service accounts, whatever the client registered.
		if ar.GetRequestedScopes().Has(clients.AdminScope) && !isServiceAccount(ar.GetClient()) {
			unit.Rollback(ctx)
			p.writeAccessError(ctx, w, ar, fosite.ErrInvalidScope.WithHint(
				"The admin scope is only for clients marked as admin service accounts (idp clients set-admin)."))
			return
		}
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		for _, a := range ar.GetRequestedAudience() {
			ar.GrantAudience(a)
		}
	}
	resp, err := p.OAuth2.NewAccessResponse(ctx, ar)
	// What still waits goes out before the answer: a token must exist before
	// the client holds it.
	if cerr := unit.Commit(ctx); cerr != nil {
		if err == nil {
			err = commitError(cerr)
		} else {
			p.Logger.ErrorContext(ctx, "token: commit after a failed request", "request_id", ops.RequestID(ctx), "err", cerr)
		}
	}
	if err != nil {
		p.writeAccessError(ctx, w, ar, err)
		return
	}
	if jkt != "" {
		resp.SetTokenType("DPoP")
	}
	p.OAuth2.WriteAccessResponse(ctx, w, ar, resp)
}

// writeAccessError answers a failed token request. A grant whose SSO
// session ended (revoked, or timed out) while it was exchanged is the
// client's invalid_grant, not our server_error.
func (p *Provider) writeAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error) {
	if store.IsSessionEnded(err) {
		err = fosite.ErrInvalidGrant.WithHint("The sign-in session this grant belongs to has ended.").WithWrap(err)
	}
	if errors.Is(err, dpop.ErrReplayed) {
		err = errInvalidDPoPProof(dpop.ErrReplayed)
	}
	if errors.Is(err, store.ErrWrongKey) {
		err = errInvalidDPoPProof(errors.New("the refresh token is bound to another key: refresh with a proof of the key it was issued to"))
	}
	if errors.Is(err, store.ErrDeviceUsed) {
		err = fosite.ErrInvalidGrant.WithHint("The device code has been used.").WithWrap(err)
	}
	err = p.oauthError(ctx, w, err)
	p.logServerError(ctx, "token", err)
	p.OAuth2.WriteAccessError(ctx, w, ar, err)
}

// revoke is the revocation endpoint (RFC 7009). A DPoP proof, when sent,
// is checked first (dpopbind.go); its jti is recorded with the
// revocation, and a replay fails both. A public client's DPoP-bound
// refresh token is revoked only with a proof of its key (revokeKeyCheck).
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	ctx, unit := p.Store.Pipeline(r.Context())
	jkt, ok := p.endpointProof(ctx, w, r, "/oauth2/revoke")
	if !ok {
		unit.Rollback(ctx)
		return
	}
	ctx = store.WithBoundKey(ctx, jkt)
	err := p.OAuth2.NewRevocationRequest(ctx, r)
	if errors.Is(err, store.ErrWrongKey) {
		// Nothing was revoked; fosite's revocation answer has no place for
		// this error, so it is the token endpoint's.
		unit.Rollback(ctx)
		p.OAuth2.WriteAccessError(ctx, w, nil, err)
		return
	}
	if cerr := unit.Commit(ctx); errors.Is(cerr, dpop.ErrReplayed) {
		// fosite's revocation answer knows only invalid_request and
		// invalid_client (anything else is 200): this one is the token
		// endpoint's.
		p.OAuth2.WriteAccessError(ctx, w, nil, errInvalidDPoPProof(cerr))
		return
	} else if cerr != nil && err == nil {
		err = commitError(cerr)
	}
	if err != nil {
		err = p.oauthError(ctx, w, err)
	}
	p.logServerError(ctx, "revoke", err)
	p.OAuth2.WriteRevocationResponse(ctx, w, err)
}

// commitError is the answer to a request whose unit of work failed to
// commit: invalid_client when the client assertion it authenticated with
// was spent by another request meanwhile (store.SetClientAssertionJWT),
// server_error otherwise.
func commitError(err error) error {
	if errors.Is(err, fosite.ErrJTIKnown) {
		return fosite.ErrInvalidClient.WithHint("This client assertion was used before: its jti may be used only once.").WithWrap(err)
	}
	if errors.Is(err, dpop.ErrReplayed) {
		return errInvalidDPoPProof(dpop.ErrReplayed)
	}
	return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
}

// oauthError is err as an app is told it: when the database could not
// serve the request, temporarily_unavailable (503, with Retry-After), noted
// for the metrics; anything else as it is.
func (p *Provider) oauthError(ctx context.Context, w http.ResponseWriter, err error) error {
	if !db.IsUnavailable(err) {
		return err
	}
	ops.NoteUnavailable(ctx)
	w.Header().Set("Retry-After", ops.UnavailableRetryAfter)
	return fosite.ErrTemporarilyUnavailable.WithWrap(err)
}

func (p *Provider) logServerError(ctx context.Context, op string, err error) {
	if err == nil {
		return
	}
	if code := fosite.ErrorToRFC6749Error(err).CodeField; code >= 500 && code != http.StatusServiceUnavailable {
		p.Logger.ErrorContext(ctx, op, "request_id", ops.RequestID(ctx), "err", err)
	}
}

// userinfo returns the claims the access token's scopes allow (OIDC Core
// 5.3), read fresh from the account.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	scheme, token := accessToken(r)
	if token == "" {
		bearerError(w, http.StatusUnauthorized, "invalid_request", "An access token is required.")
		return
	}
	// fosite falls back to refresh tokens when the access-token lookup
	// fails; a refresh token is not a bearer credential here.
	use, ar, err := p.OAuth2.IntrospectToken(ctx, token, fosite.AccessToken, openid.NewDefaultSession())
	if db.IsUnavailable(err) {
		p.unavailable(ctx, w)
		return
	}
	if err != nil || use != fosite.AccessToken {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked.")
		return
	}
	p.setNonce(w)
	code, desc, err := p.resourceProof(ctx, r, "/userinfo", scheme, token, store.BoundKey(ar))
	if db.IsUnavailable(err) {
		p.unavailable(ctx, w)
		return
	}
	if err != nil {
		p.Logger.ErrorContext(ctx, "userinfo: dpop", "request_id", ops.RequestID(ctx), "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "Internal error."})
		return
	}
	if code != "" {
		dpopChallenge(w, code, desc)
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		bearerError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope.")
		return
	}
	u, err := p.Users.ByID(ctx, ar.GetSession().GetSubject())
	if errors.Is(err, users.ErrNotFound) || (err == nil && u.DisabledAt != nil) {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The account behind this token no longer exists or is disabled.")
		return
	}
	if db.IsUnavailable(err) {
		p.unavailable(ctx, w)
		return
	}
	if err != nil {
		p.Logger.ErrorContext(ctx, "userinfo", "request_id", ops.RequestID(ctx), "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "Internal error."})
		return
	}
	claims := map[string]any{"sub": u.ID}
	if ar.GetGrantedScopes().Has("email") {
		claims["email"] = u.Email
		// true only for an address proven to reach its owner (package
		// verify); for any other the claim is left out rather than false,
		// since oauth2-proxy (and others) refuse email_verified=false by
		// default but accept an address without the claim.
		if u.EmailVerified() {
			claims["email_verified"] = true
		}
	}
	if ar.GetGrantedScopes().Has("profile") {
		claims["name"] = u.Name
	}
	writeJSON(w, http.StatusOK, claims)
}

// unavailable answers a JSON endpoint whose request the database could not
// serve.
func (p *Provider) unavailable(ctx context.Context, w http.ResponseWriter) {
	ops.NoteUnavailable(ctx)
	w.Header().Set("Retry-After", ops.UnavailableRetryAfter)
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
		"error_description": "The service is temporarily unavailable. Try again in a moment."})
}

func bearerError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	i := p.Issuer
	w.Header().Set("Cache-Control", "public, max-age=300")
	doc := map[string]any{
		"issuer":                                i,
		"authorization_endpoint":                i + "/oauth2/auth",
		"token_endpoint":                        i + "/oauth2/token",
		"userinfo_endpoint":                     i + "/userinfo",
		"jwks_uri":                              i + "/.well-known/jwks.json",
		"end_session_endpoint":                  i + "/oauth2/sessions/logout",
		"introspection_endpoint":                i + "/oauth2/introspect",
		"revocation_endpoint":                   i + "/oauth2/revoke",
		"pushed_authorization_request_endpoint": i + "/oauth2/par",
		"device_authorization_endpoint":         i + "/oauth2/device/auth",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeDeviceCode},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
			"email", "email_verified", "name"},
		"acr_values_supported":                           p.acrValues(),
		"prompt_values_supported":                        []string{"none", "login", "consent"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post", clients.PrivateKeyJWT, "none"},
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic", "client_secret_post", clients.PrivateKeyJWT},
		"revocation_endpoint_auth_methods_supported":     []string{"client_secret_basic", "client_secret_post", clients.PrivateKeyJWT, "none"},
		"claims_parameter_supported":                     false,
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"backchannel_logout_supported":                   true,
		"authorization_response_iss_parameter_supported": true,
		// Per client (idp clients create --require-par), not for all.
		"require_pushed_authorization_requests":            false,
		"backchannel_logout_session_supported":             true,
		"frontchannel_logout_supported":                    false,
		"userinfo_signing_alg_values_supported":            []string{},
		"token_endpoint_auth_signing_alg_values_supported": clients.AssertionAlgs,
		"dpop_signing_alg_values_supported":                dpop.AlgNames(),
	}
	p.registrationEndpoint(r.Context(), doc)
	writeJSON(w, http.StatusOK, doc)
}

// registrationEndpoint names the registration endpoint (RFC 7591) in doc
// when registration is on. A failed check leaves it out: discovery still
// answers.
func (p *Provider) registrationEndpoint(ctx context.Context, doc map[string]any) {
	if p.Registration == nil {
		return
	}
	on, err := p.Registration(ctx)
	if err != nil {
		p.Logger.WarnContext(ctx, "discovery: is registration on", "err", err)
	}
	if on {
		doc["registration_endpoint"] = p.Issuer + "/oauth2/register"
	}
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	// Short cache: a rotated key is published ahead of use, and apps must
	// see it before its first token.
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, p.Keys.JWKS())
}

// idTokenClaims is what we read back from an ID token we issued.
type idTokenClaims struct {
	josejwt.Claims
	SID string `json:"sid"`
}

// verifyIDTokenHint checks that hint is an ID token this provider signed
// (by kid and signature, and issuer) and returns its claims. Expiry is not
// checked: OIDC allows an expired ID token as a hint.
func (p *Provider) verifyIDTokenHint(hint string) (idTokenClaims, error) {
	tok, err := josejwt.ParseSigned(hint, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return idTokenClaims{}, errors.New("sso: id_token_hint is not a signed JWT")
	}
	pub, ok := p.Keys.PublicKey(tok.Headers[0].KeyID)
	if !ok {
		return idTokenClaims{}, errors.New("sso: id_token_hint was not signed by this provider")
	}
	var c idTokenClaims
	if err := tok.Claims(pub, &c); err != nil {
		return idTokenClaims{}, errors.New("sso: id_token_hint signature is invalid")
	}
	if c.Issuer != p.Issuer {
		return idTokenClaims{}, errors.New("sso: id_token_hint was issued by someone else")
	}
	// Accept expired hints, but not ones from the future (clock abuse).
	if c.IssuedAt != nil && c.IssuedAt.Time().After(p.Now().Add(5*time.Minute)) {
		return idTokenClaims{}, errors.New("sso: id_token_hint is issued in the future")
	}
	return c, nil
}

// acrValues are the classes of sign-in this provider issues: password,
// two factors, and, with passkeys, phishing-resistant.
func (p *Provider) acrValues() []string {
	v := []string{sessions.ACRPassword, sessions.ACRMFA}
	if p.Passkeys != nil {
		v = append(v, sessions.ACRPhishingResistant)
	}
	return v
}
