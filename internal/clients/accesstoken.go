package clients

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Access token formats (Client.AccessTokenFormat).
const (
	// AccessTokenOpaque: fosite's HMAC tokens; a resource server asks the
	// introspection endpoint about them.
	AccessTokenOpaque = "opaque"
	// AccessTokenJWT: JWT access tokens (RFC 9068), signed with the
	// provider's keys.
	AccessTokenJWT = "jwt"
)

var accessTokenFormats = []string{AccessTokenOpaque, AccessTokenJWT}

// normalizeAccessToken defaults and checks c's access token format.
func normalizeAccessToken(c *Client) []string {
	if c.AccessTokenFormat == "" {
		c.AccessTokenFormat = AccessTokenOpaque
	}
	if !slices.Contains(accessTokenFormats, c.AccessTokenFormat) {
		return []string{fmt.Sprintf("access token format %q is not supported (allowed: %s)",
			c.AccessTokenFormat, strings.Join(accessTokenFormats, ", "))}
	}
	return nil
}

// JWTAccessTokens reports whether c gets JWT access tokens.
func (c *Client) JWTAccessTokens() bool { return c.AccessTokenFormat == AccessTokenJWT }

// ResourceProblem says why resource is not a resource indicator c may ask
// for (RFC 8707 §2: an absolute URI without a fragment, and here one of
// the client's registered audience values), or "".
func (c *Client) ResourceProblem(resource string) string {
	u, err := url.Parse(resource)
	switch {
	case err != nil || !u.IsAbs():
		return fmt.Sprintf("resource %q is not an absolute URI", resource)
	case strings.Contains(resource, "#"):
		return fmt.Sprintf("resource %q must not contain a fragment", resource)
	case !slices.Contains(c.Audience, resource):
		return fmt.Sprintf("resource %q is not one this client may ask for (its registered audience)", resource)
	}
	return ""
}
