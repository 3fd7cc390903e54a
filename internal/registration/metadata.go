package registration

import (
	"encoding/json"
	"strings"

	"github.com/idp/idp/internal/clients"
)

// Metadata is a client's registered metadata as RFC 7591 §2 (and OpenID
// Connect Dynamic Client Registration, Back-Channel Logout, RFC 9126 and
// RFC 9449) name it. Fields it does not know are ignored, as §2 asks; so
// are the ones only an operator may set (an admin service account, the
// audience of a resource server).
type Metadata struct {
	RedirectURIs                     []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod          string          `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes                       []string        `json:"grant_types,omitempty"`
	ResponseTypes                    []string        `json:"response_types,omitempty"`
	ClientName                       string          `json:"client_name,omitempty"`
	Scope                            string          `json:"scope,omitempty"`
	JWKSURI                          string          `json:"jwks_uri,omitempty"`
	JWKS                             json.RawMessage `json:"jwks,omitempty"`
	TokenEndpointAuthSigningAlg      string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	IDTokenSignedResponseAlg         string          `json:"id_token_signed_response_alg,omitempty"`
	PostLogoutRedirectURIs           []string        `json:"post_logout_redirect_uris,omitempty"`
	BackchannelLogoutURI             string          `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired *bool           `json:"backchannel_logout_session_required,omitempty"`
	RequirePAR                       bool            `json:"require_pushed_authorization_requests,omitempty"`
	DPoPBoundAccessTokens            bool            `json:"dpop_bound_access_tokens,omitempty"`
}

// client is the clients.Client that m describes, under id. A client
// registered by API always asks people for consent: whoever registered it
// is a stranger to them, unlike an app the operator set up.
func (m Metadata) client(id string) clients.Client {
	c := clients.Client{
		ID: id, Name: m.ClientName,
		RedirectURIs:                     m.RedirectURIs,
		PostLogoutRedirectURIs:           m.PostLogoutRedirectURIs,
		BackchannelLogoutURI:             m.BackchannelLogoutURI,
		BackchannelLogoutSessionRequired: m.BackchannelLogoutSessionRequired == nil || *m.BackchannelLogoutSessionRequired,
		GrantTypes:                       m.GrantTypes,
		ResponseTypes:                    m.ResponseTypes,
		Scopes:                           strings.Fields(m.Scope),
		RequireConsent:                   true,
		IDTokenAlg:                       m.IDTokenSignedResponseAlg,
		RequirePAR:                       m.RequirePAR,
		TokenEndpointAuthMethod:          m.TokenEndpointAuthMethod,
		TokenEndpointAuthSigningAlg:      m.TokenEndpointAuthSigningAlg,
		JWKS:                             m.JWKS,
		JWKSURI:                          m.JWKSURI,
		DPoPBoundAccessTokens:            m.DPoPBoundAccessTokens,
	}
	// RFC 7591 §2: client_secret_basic when none is named.
	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = "client_secret_basic"
	}
	c.Public = c.TokenEndpointAuthMethod == "none"
	return c
}

// metadataOf is what c has registered, as Metadata.
func metadataOf(c *clients.Client) Metadata {
	session := c.BackchannelLogoutSessionRequired
	return Metadata{
		RedirectURIs:                     c.RedirectURIs,
		TokenEndpointAuthMethod:          c.GetTokenEndpointAuthMethod(),
		GrantTypes:                       c.GrantTypes,
		ResponseTypes:                    c.ResponseTypes,
		ClientName:                       c.Name,
		Scope:                            strings.Join(c.Scopes, " "),
		JWKSURI:                          c.JWKSURI,
		JWKS:                             c.JWKS,
		TokenEndpointAuthSigningAlg:      c.TokenEndpointAuthSigningAlg,
		IDTokenSignedResponseAlg:         c.IDTokenAlg,
		PostLogoutRedirectURIs:           c.PostLogoutRedirectURIs,
		BackchannelLogoutURI:             c.BackchannelLogoutURI,
		BackchannelLogoutSessionRequired: &session,
		RequirePAR:                       c.RequirePAR,
		DPoPBoundAccessTokens:            c.DPoPBoundAccessTokens,
	}
}

// authKind is how a client with token_endpoint_auth_method m
// authenticates: by a secret, an assertion or nothing. An update may not
// change it, since that would mean issuing or dropping a credential.
func authKind(method string) string {
	switch method {
	case "", "client_secret_basic", "client_secret_post":
		return "secret"
	}
	return method
}
