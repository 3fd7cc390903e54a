package clients

import (
	"context"
	"fmt"

	"github.com/idp/idp/internal/db"
)

// CheckRedirectURI returns why u cannot be a redirect URI (matched
// exactly; https, or http on a loopback host), nil when it can: the rule
// Create applies, for callers that answer a bad redirect URI with an
// error of its own (RFC 7591's invalid_redirect_uri).
func CheckRedirectURI(u string) error {
	if why := checkURI(u); why != "" {
		return fmt.Errorf("%w: redirect URI %q %s", ErrInvalid, u, why)
	}
	return nil
}

// Replace validates c as Create does and replaces the metadata of the
// registered client c.ID with it: everything but its secret, its creation
// time and its admin service account mark, which stay as they were (an
// update rotates no credential). Inside the caller's transaction when ctx
// carries one. ErrInvalid or ErrNotFound; nothing is written on error.
func (s *Store) Replace(ctx context.Context, c Client) error {
	if err := normalize(&c, s.AllowPrivateBackchannel); err != nil {
		return err
	}
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		UPDATE oauth_clients SET name = $2, public = $3, redirect_uris = $4, post_logout_redirect_uris = $5,
			backchannel_logout_uri = $6, backchannel_logout_session_required = $7, grant_types = $8, response_types = $9,
			scopes = $10, audience = $11, require_consent = $12, id_token_signed_response_alg = $13,
			require_pushed_authorization_requests = $14, token_endpoint_auth_method = $15, token_endpoint_auth_signing_alg = $16,
			jwks = $17, jwks_uri = $18, dpop_bound_access_tokens = $19
		WHERE id = $1`,
		c.ID, c.Name, c.Public, c.RedirectURIs, c.PostLogoutRedirectURIs,
		c.BackchannelLogoutURI, c.BackchannelLogoutSessionRequired, c.GrantTypes, c.ResponseTypes,
		c.Scopes, c.Audience, c.RequireConsent, c.IDTokenAlg,
		c.RequirePAR, c.TokenEndpointAuthMethod, c.TokenEndpointAuthSigningAlg, nullJSON(c.JWKS), c.JWKSURI,
		c.DPoPBoundAccessTokens)
	s.forget(c.ID)
	if err != nil {
		return fmt.Errorf("clients: replace: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", ErrNotFound, c.ID)
	}
	return nil
}
