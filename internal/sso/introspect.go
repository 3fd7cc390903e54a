package sso

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/sso/store"
)

// introspect is the introspection endpoint (RFC 7662), for those entitled
// to an answer only (§4: "the authorization server MUST determine whether
// the token can be used at the protected resource that is attempting to
// introspect it").
//
//   - The caller authenticates as a confidential client, with
//     client_secret_basic, client_secret_post or private_key_jwt. A bearer token is not a
//     caller (fosite would accept one), nor is a public client.
//   - A token is active to its own client, and an access token also to a
//     resource server it was issued for: a client whose id is in the
//     token's granted audience (the app is registered with --audience
//     <resource server's client id> and asks for audience=<that id>). To
//     every other caller every token is {"active": false}, as a token that
//     does not exist would be, so nobody learns which tokens are live.
//   - The owner's email (username) goes only to the token's own client,
//     and only when the token was granted the email scope: what that
//     client could read at /userinfo anyway. A resource server learns the
//     subject, the scopes and the client, never who the person is.
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		p.introspectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("The request body could not be read as a form."))
		return
	}
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		p.introspectionError(ctx, w, fosite.ErrInvalidClient.WithHint(
			"Introspection needs client authentication (client_secret_basic or client_secret_post); a bearer token is not accepted."))
		return
	}
	if _, _, basic := r.BasicAuth(); !basic && r.PostForm.Get("client_id") == "" && r.PostForm.Get("client_assertion") == "" {
		// fosite calls this invalid_request; RFC 6749 §5.2 says invalid_client.
		p.introspectionError(ctx, w, fosite.ErrInvalidClient.WithHint("Introspection needs client authentication."))
		return
	}
	caller, err := p.OAuth2.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		p.introspectionError(ctx, w, err)
		return
	}
	if caller.IsPublic() {
		p.introspectionError(ctx, w, fosite.ErrInvalidClient.WithHint("A public client cannot introspect tokens: it has no credentials."))
		return
	}
	// A proof, when sent, is checked as at every endpoint (RFC 9449),
	// once the caller is known: a stranger's proofs are not recorded.
	if _, ok := p.endpointProof(ctx, w, r, "/oauth2/introspect"); !ok {
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		p.introspectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	use, ar, err := p.OAuth2.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), openid.NewDefaultSession())
	if err != nil {
		if fosite.ErrorToRFC6749Error(err).CodeField >= 500 {
			// Unknown is not inactive: a resource server told "inactive"
			// during an outage would sign its users out.
			p.introspectionError(ctx, w, err)
			return
		}
		writeIntrospection(w, map[string]any{"active": false})
		return
	}
	if !entitled(caller, use, ar) {
		writeIntrospection(w, map[string]any{"active": false})
		return
	}
	writeIntrospection(w, p.introspection(caller, use, ar))
}

// entitled reports whether caller may learn about the token behind ar: it
// is the token's client, or the token is an access token issued for caller
// (caller's id is in its granted audience). Refresh tokens concern no
// resource server.
func entitled(caller fosite.Client, use fosite.TokenUse, ar fosite.AccessRequester) bool {
	if caller.GetID() == ar.GetClient().GetID() {
		return true
	}
	return use == fosite.AccessToken && slices.Contains(ar.GetGrantedAudience(), caller.GetID())
}

// introspection is the answer about an active token to an entitled caller.
func (p *Provider) introspection(caller fosite.Client, use fosite.TokenUse, ar fosite.AccessRequester) map[string]any {
	s := ar.GetSession()
	out := map[string]any{"active": true, "iss": p.Issuer, "client_id": ar.GetClient().GetID()}
	if scopes := ar.GetGrantedScopes(); len(scopes) > 0 {
		out["scope"] = strings.Join(scopes, " ")
	}
	if sub := s.GetSubject(); sub != "" {
		out["sub"] = sub
	}
	if aud := ar.GetGrantedAudience(); len(aud) > 0 {
		out["aud"] = []string(aud)
	}
	if at := ar.GetRequestedAt(); !at.IsZero() {
		out["iat"] = at.Unix()
	}
	if exp := s.GetExpiresAt(use); !exp.IsZero() {
		out["exp"] = exp.Unix()
	}
	if use == fosite.AccessToken {
		out["token_type"] = fosite.BearerAccessToken
		if jkt := store.BoundKey(ar); jkt != "" {
			// RFC 9449 §6.2: the resource server checks the proof's key.
			out["cnf"] = map[string]string{"jkt": jkt}
			out["token_type"] = "DPoP"
		}
	}
	if caller.GetID() == ar.GetClient().GetID() && ar.GetGrantedScopes().Has("email") && s.GetUsername() != "" {
		out["username"] = s.GetUsername()
	}
	return out
}

func writeIntrospection(w http.ResponseWriter, v map[string]any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, v)
}

// introspectionError answers a request that gets no introspection at all,
// in the token endpoint's error format (RFC 6749 §5.2): invalid_client
// with 401 and a Basic challenge when the caller is not an authenticated
// confidential client, temporarily_unavailable when the database could not
// serve the request.
func (p *Provider) introspectionError(ctx context.Context, w http.ResponseWriter, err error) {
	err = p.oauthError(ctx, w, err)
	p.logServerError(ctx, "introspect", err)
	if fosite.ErrorToRFC6749Error(err).ErrorField == fosite.ErrInvalidClient.ErrorField {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+p.Issuer+`"`)
	}
	p.OAuth2.WriteAccessError(ctx, w, nil, err)
}
