package sso

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/sso/store"
)

// GrantTypeDeviceCode is the device authorization grant (RFC 8628 §3.4).
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// The device grant's own error codes (RFC 8628 §3.5), in fosite's error
// format so the token endpoint writes them as it writes its own.
var (
	errAuthorizationPending = &fosite.RFC6749Error{ErrorField: "authorization_pending", CodeField: http.StatusBadRequest,
		DescriptionField: "The authorization request is still pending: the person has not yet approved it."}
	errSlowDown = &fosite.RFC6749Error{ErrorField: "slow_down", CodeField: http.StatusBadRequest,
		DescriptionField: "The authorization request is still pending, and the device polls too often: wait 5 seconds longer between polls from now on."}
	errExpiredToken = &fosite.RFC6749Error{ErrorField: "expired_token", CodeField: http.StatusBadRequest,
		DescriptionField: "The device code has expired: start a new device authorization request."}
)

// deviceGrant is the token endpoint's handler of the device grant, beside
// fosite's own (fosite v0.49.0 has none): a poll with a device code finds
// the request pending, too fast, expired, denied, or approved, and then
// issues the tokens in the approving SSO session as the code grant does,
// with fosite's strategies and the same storage, so that refresh,
// introspection, revocation and a session's end treat them alike.
type deviceGrant struct {
	store    *store.Store
	strategy oauth2.CoreStrategy
	idTokens *openid.IDTokenHandleHelper
	config   fosite.Configurator
}

// deviceGrantFactory is a compose.Factory for deviceGrant.
func deviceGrantFactory(config fosite.Configurator, storage, strategy any) any {
	s := strategy.(interface {
		oauth2.CoreStrategy
		openid.OpenIDConnectTokenStrategy
	})
	return &deviceGrant{store: storage.(*store.Store), strategy: s,
		idTokens: &openid.IDTokenHandleHelper{IDTokenStrategy: s}, config: config}
}

var _ fosite.TokenEndpointHandler = (*deviceGrant)(nil)

// CanSkipClientAuth implements fosite.TokenEndpointHandler: a device
// client authenticates as any other (a public one by its client_id).
func (h *deviceGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *deviceGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantTypeDeviceCode)
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler: it
// records the poll and answers with the request's state; an approved
// request's grant (scopes, audience, and the session with the ID token's
// claims) moves into r.
func (h *deviceGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	if !r.GetClient().GetGrantTypes().Has(GrantTypeDeviceCode) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not allowed to use the device authorization grant.")
	}
	code := r.GetRequestForm().Get("device_code")
	if code == "" {
		return fosite.ErrInvalidRequest.WithHint("The device_code parameter is missing.")
	}
	poll, err := h.store.PollDevice(ctx, store.HashSignature(code), r.GetSession())
	if errors.Is(err, fosite.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The device code is unknown.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	// Another client's code is as unknown to this one as a made-up one.
	if poll.ClientID != r.GetClient().GetID() {
		return fosite.ErrInvalidGrant.WithHint("The device code is unknown.")
	}
	switch {
	case poll.Status == store.DeviceUsed:
		return fosite.ErrInvalidGrant.WithHint("The device code has been used.")
	case poll.Expired:
		return errExpiredToken
	case poll.Status == store.DeviceDenied:
		return fosite.ErrAccessDenied.WithHint("The person denied the request.")
	case poll.Status == store.DevicePending && poll.TooFast:
		return errSlowDown
	case poll.Status == store.DevicePending:
		return errAuthorizationPending
	}
	// Approved: the grant is what the person approved; the tokens are
	// issued in PopulateTokenEndpointResponse.
	r.SetRequestedScopes(poll.Scopes)
	r.SetRequestedAudience(poll.Audience)
	for _, s := range poll.GrantedScopes {
		r.GrantScope(s)
	}
	for _, a := range poll.Audience {
		r.GrantAudience(a)
	}
	now := time.Now().UTC()
	r.GetSession().SetExpiresAt(fosite.AccessToken, now.Add(h.config.GetAccessTokenLifespan(ctx)).Round(time.Second))
	if h.refreshable(r) {
		r.GetSession().SetExpiresAt(fosite.RefreshToken, now.Add(h.config.GetRefreshTokenLifespan(ctx)).Round(time.Second))
	}
	return nil
}

// refreshable: a refresh token goes to clients with the refresh_token grant.
func (h *deviceGrant) refreshable(r fosite.Requester) bool {
	return r.GetClient().GetGrantTypes().Has("refresh_token")
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler:
// the approved request is spent (checking its SSO session is still live,
// under the session's share lock) before the tokens are written, all in
// the token endpoint's unit of work.
func (h *deviceGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	access, accessSig, err := h.strategy.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	var refresh, refreshSig string
	if h.refreshable(r) {
		if refresh, refreshSig, err = h.strategy.GenerateRefreshToken(ctx, r); err != nil {
			return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
		}
	}
	if err := h.store.QueueUseDevice(ctx, store.HashSignature(r.GetRequestForm().Get("device_code"))); err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	// Sanitize keeps no form parameter: the device code stays out of the
	// stored request.
	if err := h.store.CreateAccessTokenSession(ctx, accessSig, r.Sanitize(nil)); err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	if refreshSig != "" {
		if err := h.store.CreateRefreshTokenSession(ctx, refreshSig, accessSig, r.Sanitize(nil)); err != nil {
			return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
		}
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Until(r.GetSession().GetExpiresAt(fosite.AccessToken)).Round(time.Second))
	resp.SetScopes(r.GetGrantedScopes())
	if refresh != "" {
		resp.SetExtra("refresh_token", refresh)
	}
	if r.GetGrantedScopes().Has("openid") {
		// An ID token as on a refresh: the claims of the approving sign-in.
		sess, ok := r.GetSession().(openid.Session)
		if !ok {
			return fosite.ErrServerError.WithDebug("the device grant's session is not an OpenID Connect session")
		}
		claims := sess.IDTokenClaims()
		claims.AccessTokenHash = h.idTokens.GetAccessTokenHash(ctx, r, resp)
		claims.JTI = uuid.New().String()
		claims.IssuedAt = time.Now().Truncate(time.Second)
		claims.ExpiresAt = time.Time{}
		if err := h.idTokens.IssueExplicitIDToken(ctx, h.config.GetIDTokenLifespan(ctx), r, resp); err != nil {
			return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
		}
	}
	return nil
}
