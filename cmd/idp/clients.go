package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
)

func clientsCreateCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clients create", "--id ID --redirect-uri URI... [flags]")
	var cl clients.Client
	var redirects, postLogout, grants, scopes, audience stringList
	fs.StringVar(&cl.ID, "id", "", "client `id`: 1-64 of A-Z a-z 0-9 . _ - (required)")
	fs.StringVar(&cl.Name, "name", "", "display `name` shown to people on consent")
	fs.Var(&redirects, "redirect-uri", "allowed redirect `URI`, matched exactly; repeat for more (required for authorization_code)")
	fs.Var(&postLogout, "post-logout-redirect-uri", "allowed post-logout redirect `URI`; repeat for more")
	fs.StringVar(&cl.BackchannelLogoutURI, "backchannel-logout-uri", "", "`URI` that receives back-channel logout tokens")
	fs.BoolVar(&cl.BackchannelLogoutSessionRequired, "backchannel-logout-session-required", true, "include sid in logout tokens")
	fs.Var(&grants, "grant-type", "allowed `grant` type: authorization_code, refresh_token, client_credentials or urn:ietf:params:oauth:grant-type:device_code (RFC 8628, with --public and refresh_token for a TV or a command line; no redirect URI needed); repeat for more (default authorization_code and refresh_token)")
	fs.Var(&scopes, "scope", "`scope` the client may request; repeat for more (default openid, profile, email, offline_access)")
	fs.Var(&audience, "audience", "`audience` the client may request for its tokens; repeat for more")
	fs.BoolVar(&cl.Public, "public", false, "public client: no secret, for native and browser apps (which use PKCE)")
	fs.BoolVar(&cl.RequireConsent, "require-consent", false, "ask people for consent before the first sign-in to this client")
	fs.StringVar(&cl.IDTokenAlg, "id-token-alg", "RS256", "ID token signature `algorithm`: RS256 or ES256")
	fs.BoolVar(&cl.AdminServiceAccount, "admin", false, "an admin service account: its client_credentials tokens with the admin scope "+
		"may call the admin API (grant type defaults to client_credentials, scope to admin)")
	fs.BoolVar(&cl.RequirePAR, "require-par", false, "take this client's authorization requests only through pushed authorization requests (RFC 9126, /oauth2/par)")
	fs.StringVar(&cl.TokenEndpointAuthMethod, "token-endpoint-auth-method", "", "how the client authenticates: client_secret_basic "+
		"(a secret, by HTTP Basic or in the body; the default), private_key_jwt (assertions signed with a key in --jwks or at --jwks-uri), none (--public)")
	jwks := fs.String("jwks", "", "the client's public keys for private_key_jwt, a JSON Web Key Set (`JSON`)")
	fs.StringVar(&cl.JWKSURI, "jwks-uri", "", "`URL` where the client publishes its public keys for private_key_jwt (fetched with a timeout and cached)")
	fs.StringVar(&cl.TokenEndpointAuthSigningAlg, "token-endpoint-auth-signing-alg", "", "the `algorithm` the client's assertions are signed with "+
		"(private_key_jwt; default RS256): RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512")
	fs.BoolVar(&cl.DPoPBoundAccessTokens, "dpop-bound-access-tokens", false,
		"tokens only with a DPoP proof (RFC 9449): every access token is bound to the client's key")
	fs.StringVar(&cl.AccessTokenFormat, "access-token-format", "", "`format` of the client's access tokens: opaque (the default; "+
		"resource servers introspect them) or jwt (RFC 9068, signed with the provider's keys)")
	set := newSettings(fs, c.getenv)
	allowPrivate := set.Bool("allow-private-backchannel", "IDP_ALLOW_PRIVATE_BACKCHANNEL", false,
		"let the back-channel logout URI be on this host, a private network or a link-local address: for demos and tests")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	if err := set.err(); err != nil {
		return fmt.Errorf("clients create: %w", err)
	}
	if *jwks != "" {
		cl.JWKS = []byte(*jwks)
	}
	cl.RedirectURIs, cl.PostLogoutRedirectURIs = redirects, postLogout
	cl.GrantTypes, cl.Scopes, cl.Audience = grants, scopes, audience
	if cl.AdminServiceAccount {
		// A script's client: no redirect URIs, no people, just the API.
		if len(cl.GrantTypes) == 0 {
			cl.GrantTypes = []string{clients.GrantClientCredentials}
		}
		if len(cl.Scopes) == 0 {
			cl.Scopes = []string{clients.AdminScope}
		}
	}

	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := clients.NewStore(pool)
	store.AllowPrivateBackchannel = *allowPrivate
	var secret string
	err = audited(ctx, pool, "clients.create", func(ctx context.Context) (string, any, error) {
		var err error
		secret, err = store.Create(ctx, cl)
		return audit.Client(cl.ID), map[string]any{"public": cl.Public, "redirect_uris": cl.RedirectURIs,
			"grant_types": cl.GrantTypes, "scopes": cl.Scopes, "backchannel_logout_uri": cl.BackchannelLogoutURI,
			"admin_service_account": cl.AdminServiceAccount, "require_pushed_authorization_requests": cl.RequirePAR,
			"token_endpoint_auth_method": cl.TokenEndpointAuthMethod, "jwks_uri": cl.JWKSURI,
			"dpop_bound_access_tokens": cl.DPoPBoundAccessTokens, "access_token_format": cl.AccessTokenFormat}, err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret,omitempty"`
		}{cl.ID, secret})
	}
	if secret == "" && cl.TokenEndpointAuthMethod == clients.PrivateKeyJWT {
		_, err = fmt.Fprintf(c.stdout, "client_id: %s\n\nThe client authenticates with private_key_jwt: there is no secret; "+
			"its assertions are checked against its registered keys.\n", cl.ID)
		return err
	}
	if secret == "" {
		_, err = fmt.Fprintf(c.stdout, "client_id: %s\n\nPublic client: there is no secret; the app authenticates with PKCE.\n", cl.ID)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "client_id:     %s\nclient_secret: %s\n\n"+
		"The secret is shown only this once and cannot be recovered (only its hash is stored). Store it now.\n",
		cl.ID, secret)
	return err
}

func clientsListCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clients list", "[--json]")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	list, err := clients.NewStore(pool).List(ctx)
	if err != nil {
		return err
	}
	return printList(c.stdout, *asJSON, list, "", "ID\tNAME\tTYPE\tGRANT TYPES\tREDIRECT URIS\tBACK-CHANNEL LOGOUT", func(cl clients.Client) []string {
		kind := "confidential"
		if cl.Public {
			kind = "public"
		}
		if cl.AdminServiceAccount {
			kind = "admin-service-account"
		}
		return []string{cl.ID, cl.Name, kind, strings.Join(cl.GrantTypes, ","), strings.Join(cl.RedirectURIs, " "), cl.BackchannelLogoutURI}
	})
}

func clientsDeleteCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clients delete", "--id ID [--json]")
	id := fs.String("id", "", "client `id` (required)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := audited(ctx, pool, "clients.delete", func(ctx context.Context) (string, any, error) {
		return "client:" + *id, nil, clients.NewStore(pool).Delete(ctx, *id)
	}); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, map[string]any{"client_id": *id, "deleted": true})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted client %s and revoked its tokens\n", *id)
	return err
}

// clientsSetAdminCommand marks a client as an admin service account, or
// with --admin=false removes the mark: its admin API calls are refused
// from the next one on.
func clientsSetAdminCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clients set-admin", "--id ID [--admin=false] [--json]")
	id := fs.String("id", "", "client `id` (required)")
	on := fs.Bool("admin", true, "mark as an admin service account; --admin=false removes the mark")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := c.newAdmin(pool).SetServiceAccount(ctx, *id, *on, cliActor); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, map[string]any{"client_id": *id, "admin_service_account": *on})
	}
	if *on {
		_, err = fmt.Fprintf(c.stdout, "client %s is an admin service account: its client_credentials tokens with scope admin may call the admin API\n", *id)
	} else {
		_, err = fmt.Fprintf(c.stdout, "client %s is no longer an admin service account: its admin API calls are refused from now on\n", *id)
	}
	return err
}
