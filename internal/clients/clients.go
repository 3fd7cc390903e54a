// Package clients owns the registry of OAuth clients (relying parties):
// registering one with validated redirect and logout URIs and a generated
// secret, looking one up for fosite (cached briefly, since the token
// endpoint asks on every request), listing and deleting.
//
// A client is a fosite.OpenIDConnectClient, for its keys: fosite checks a
// private_key_jwt client's assertions (RFC 7523) against them. fosite
// would also hold a client with a secret to one token_endpoint_auth_method;
// we accept both client_secret_basic and client_secret_post, so the
// provider authenticates those itself (sso's client authentication).
package clients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/idp/idp/internal/db"
)

// Client is a registered application. The JSON names follow OpenID Connect
// Dynamic Client Registration metadata where one exists; the secret hash is
// never printed.
type Client struct {
	ID                     string   `json:"client_id"`
	Name                   string   `json:"client_name"`
	SecretHash             []byte   `json:"-"`
	Public                 bool     `json:"public"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	BackchannelLogoutURI   string   `json:"backchannel_logout_uri,omitempty"`
	// BackchannelLogoutSessionRequired: the client wants a sid in logout
	// tokens. The schema and the CLI default it to true; a Client built in Go
	// must set it, since false is the zero value.
	BackchannelLogoutSessionRequired bool     `json:"backchannel_logout_session_required"`
	GrantTypes                       []string `json:"grant_types"`
	ResponseTypes                    []string `json:"response_types"`
	Scopes                           []string `json:"scopes"`
	Audience                         []string `json:"audience"`
	// RequireConsent: ask the person before the first grant to this client.
	RequireConsent bool `json:"require_consent"`
	// IDTokenAlg signs this client's ID tokens: "RS256" (default) or "ES256".
	IDTokenAlg string `json:"id_token_signed_response_alg"`
	// AdminServiceAccount: the client may administer the provider without a
	// person (an offboarding script, an HR system). Only such a client is
	// granted AdminScope with client_credentials, and the admin API checks
	// the mark again on every request. It needs client_credentials and a
	// secret; registering one adds AdminScope to its scopes.
	AdminServiceAccount bool `json:"admin_service_account"`
	// RequirePAR: the authorization endpoint takes this client's requests
	// only through a pushed authorization request (RFC 9126), so none of
	// its parameters travel through the browser.
	RequirePAR bool `json:"require_pushed_authorization_requests"`
	// TokenEndpointAuthMethod is how the client authenticates (RFC 7591):
	// "none" for a public client, "private_key_jwt" for one that signs
	// assertions with a key in JWKS or at JWKSURI, and otherwise
	// "client_secret_basic", which stands for both ways of sending the
	// secret.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method"`
	// TokenEndpointAuthSigningAlg is the one algorithm a private_key_jwt
	// client's assertions are signed with (default RS256).
	TokenEndpointAuthSigningAlg string `json:"token_endpoint_auth_signing_alg,omitempty"`
	// JWKS holds a private_key_jwt client's public keys, as JSON (RFC 7517).
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// JWKSURI is where a private_key_jwt client publishes them instead
	// (fetched by KeyFetcher).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// DPoPBoundAccessTokens: the client gets tokens only with a DPoP proof
	// (RFC 9449 §5.2), so each is bound to its key.
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens"`
	// AccessTokenFormat is AccessTokenOpaque (the default) or
	// AccessTokenJWT: a signed JWT (RFC 9068) a resource server can verify
	// without asking the provider.
	AccessTokenFormat string    `json:"access_token_format"`
	CreatedAt         time.Time `json:"created_at"`

	keys *jose.JSONWebKeySet // JWKS parsed, for fosite
}

// AdminScope is the scope of the admin API. The authorization endpoint
// grants it only to an administrator's two-factor session, the token
// endpoint only to an admin service account.
const AdminScope = "admin"

var _ fosite.Client = (*Client)(nil)

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret implements fosite.Client: the SHA-256 of the secret, to be
// checked by SecretHasher.
func (c *Client) GetHashedSecret() []byte { return c.SecretHash }

// GetRedirectURIs implements fosite.Client.
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }

// GetGrantTypes implements fosite.Client.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }

// GetResponseTypes implements fosite.Client.
func (c *Client) GetResponseTypes() fosite.Arguments { return c.ResponseTypes }

// GetScopes implements fosite.Client.
func (c *Client) GetScopes() fosite.Arguments { return c.Scopes }

// IsPublic implements fosite.Client.
func (c *Client) IsPublic() bool { return c.Public }

// GetAudience implements fosite.Client.
func (c *Client) GetAudience() fosite.Arguments { return c.Audience }

// PrivateKeyJWT is the token_endpoint_auth_method of clients that
// authenticate with a signed assertion (RFC 7523 §2.2, OpenID Connect Core
// §9).
const PrivateKeyJWT = "private_key_jwt"

var _ fosite.OpenIDConnectClient = (*Client)(nil)

// GetJSONWebKeys implements fosite.OpenIDConnectClient: the registered
// keys, nil when there are none (or they are at JWKSURI).
func (c *Client) GetJSONWebKeys() *jose.JSONWebKeySet { return c.keys }

// GetJSONWebKeysURI implements fosite.OpenIDConnectClient.
func (c *Client) GetJSONWebKeysURI() string { return c.JWKSURI }

// GetTokenEndpointAuthMethod implements fosite.OpenIDConnectClient.
func (c *Client) GetTokenEndpointAuthMethod() string {
	switch {
	case c.Public:
		return "none"
	case c.TokenEndpointAuthMethod == PrivateKeyJWT:
		return PrivateKeyJWT
	}
	return "client_secret_basic"
}

// GetTokenEndpointAuthSigningAlgorithm implements
// fosite.OpenIDConnectClient.
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.TokenEndpointAuthSigningAlg == "" {
		return "RS256"
	}
	return c.TokenEndpointAuthSigningAlg
}

// GetRequestURIs implements fosite.OpenIDConnectClient: none. Request
// objects are not supported.
func (c *Client) GetRequestURIs() []string { return nil }

// GetRequestObjectSigningAlgorithm implements fosite.OpenIDConnectClient
// with a name no algorithm has, so that fosite would refuse any request
// object, were one to reach it (the authorization endpoint refuses them
// first).
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "request-objects-not-supported" }

func (c *Client) clone() *Client {
	d := *c
	d.JWKS = slices.Clone(c.JWKS)
	d.SecretHash = slices.Clone(c.SecretHash)
	d.RedirectURIs = slices.Clone(c.RedirectURIs)
	d.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	d.GrantTypes = slices.Clone(c.GrantTypes)
	d.ResponseTypes = slices.Clone(c.ResponseTypes)
	d.Scopes = slices.Clone(c.Scopes)
	d.Audience = slices.Clone(c.Audience)
	return &d
}

var (
	ErrNotFound = errors.New("clients: client not found")
	// ErrInvalid is wrapped with what is wrong.
	ErrInvalid = errors.New("clients: invalid client")
	ErrExists  = errors.New("clients: client id already registered")
	// ErrSecretMismatch is SecretHasher.Compare's answer for a wrong secret.
	ErrSecretMismatch = errors.New("clients: wrong client secret")
)

// SecretHasher is the fosite.Hasher for client secrets (fosite's
// Config.ClientSecretsHasher). Plain SHA-256 is enough: the secrets are 256
// random bits generated here, not chosen by people, so there is nothing for
// a slow hash to protect against a dictionary, and the token endpoint
// checks a secret on every request.
type SecretHasher struct{}

var _ fosite.Hasher = SecretHasher{}

// Hash returns the SHA-256 of data.
func (SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	return sum[:], nil
}

// Compare returns nil when data hashes to hash, ErrSecretMismatch otherwise,
// in constant time.
func (SecretHasher) Compare(_ context.Context, hash, data []byte) error {
	sum := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(hash, sum[:]) != 1 {
		return ErrSecretMismatch
	}
	return nil
}

// DefaultTTL is how long Get trusts a cached client. A deleted or changed
// client may be served by other instances for this long.
const DefaultTTL = 5 * time.Second

// Store keeps clients in PostgreSQL with a small per-instance cache.
type Store struct {
	Pool *pgxpool.Pool
	// TTL of cached clients; zero means DefaultTTL, negative disables the
	// cache.
	TTL time.Duration
	Now func() time.Time
	// AllowPrivateBackchannel lets a client's back-channel logout URI be
	// on this host, a private network or a link-local address
	// (IDP_ALLOW_PRIVATE_BACKCHANNEL); refused otherwise.
	AllowPrivateBackchannel bool

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	client  *Client
	expires time.Time
}

// NewStore returns a Store with the default cache TTL.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{Pool: pool, TTL: DefaultTTL, Now: time.Now}
}

// newSecret returns 32 random bytes, base64url without padding.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Create validates and registers c, and returns its secret ("" for a public
// or a private_key_jwt client): shown to the caller once, stored only as a SHA-256 digest.
// Defaults fill empty fields (see normalize). Nothing is written on error:
// ErrInvalid (wrapping every problem found) or ErrExists.
func (s *Store) Create(ctx context.Context, c Client) (secret string, err error) {
	if err := normalize(&c, s.AllowPrivateBackchannel); err != nil {
		return "", err
	}
	c.SecretHash = nil
	if !c.Public && c.TokenEndpointAuthMethod != PrivateKeyJWT {
		secret = newSecret()
		c.SecretHash, _ = SecretHasher{}.Hash(ctx, []byte(secret))
	}
	_, err = db.Conn(ctx, s.Pool).Exec(ctx, `
		INSERT INTO oauth_clients (id, name, secret_hash, public, redirect_uris, post_logout_redirect_uris,
			backchannel_logout_uri, backchannel_logout_session_required, grant_types, response_types,
			scopes, audience, require_consent, id_token_signed_response_alg, created_at, admin_service_account,
			require_pushed_authorization_requests, token_endpoint_auth_method, token_endpoint_auth_signing_alg,
			jwks, jwks_uri, dpop_bound_access_tokens, access_token_format)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
		c.ID, c.Name, c.SecretHash, c.Public, c.RedirectURIs, c.PostLogoutRedirectURIs,
		c.BackchannelLogoutURI, c.BackchannelLogoutSessionRequired, c.GrantTypes, c.ResponseTypes,
		c.Scopes, c.Audience, c.RequireConsent, c.IDTokenAlg, s.Now(), c.AdminServiceAccount,
		c.RequirePAR, c.TokenEndpointAuthMethod, c.TokenEndpointAuthSigningAlg, nullJSON(c.JWKS), c.JWKSURI,
		c.DPoPBoundAccessTokens, c.AccessTokenFormat)
	if db.IsUniqueViolation(err) {
		return "", fmt.Errorf("%w: %q", ErrExists, c.ID)
	}
	if err != nil {
		return "", fmt.Errorf("clients: create: %w", err)
	}
	return secret, nil
}

const clientColumns = `id, name, secret_hash, public, redirect_uris, post_logout_redirect_uris,
	backchannel_logout_uri, backchannel_logout_session_required, grant_types, response_types,
	scopes, audience, require_consent, id_token_signed_response_alg, created_at, admin_service_account,
	require_pushed_authorization_requests, token_endpoint_auth_method, token_endpoint_auth_signing_alg,
	jwks, jwks_uri, dpop_bound_access_tokens, access_token_format`

func scanClient(row pgx.Row) (*Client, error) {
	var c Client
	err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &c.Public, &c.RedirectURIs, &c.PostLogoutRedirectURIs,
		&c.BackchannelLogoutURI, &c.BackchannelLogoutSessionRequired, &c.GrantTypes, &c.ResponseTypes,
		&c.Scopes, &c.Audience, &c.RequireConsent, &c.IDTokenAlg, &c.CreatedAt, &c.AdminServiceAccount,
		&c.RequirePAR, &c.TokenEndpointAuthMethod, &c.TokenEndpointAuthSigningAlg, &c.JWKS, &c.JWKSURI,
		&c.DPoPBoundAccessTokens, &c.AccessTokenFormat)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if len(c.JWKS) > 0 {
		// Validated at registration; fosite reads them as go-jose v3 keys.
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil {
			return nil, fmt.Errorf("client %q: stored jwks: %w", c.ID, err)
		}
		c.keys = &set
	}
	return &c, nil
}

// nullJSON is b for a jsonb column, NULL when empty.
func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func (s *Store) ttl() time.Duration {
	if s.TTL == 0 {
		return DefaultTTL
	}
	return s.TTL
}

// Get returns the client with id, from the cache when it is fresh. The
// result is the caller's own copy.
func (s *Store) Get(ctx context.Context, id string) (*Client, error) {
	if !validID.MatchString(id) {
		return nil, ErrNotFound // cannot exist; spare the database
	}
	now := s.Now()
	s.mu.Lock()
	e, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.client.clone(), nil
	}
	c, err := scanClient(db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT `+clientColumns+` FROM oauth_clients WHERE id = $1`, id))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		return nil, fmt.Errorf("clients: get: %w", err)
	}
	// Only clients that exist are cached, so the map is bounded by the
	// registry, not by what strangers send. Reads inside a transaction are
	// not cached: the transaction may yet roll back.
	if ttl := s.ttl(); ttl > 0 {
		if u, inUnit := db.From(ctx); !inUnit || u.Pipelined() {
			s.mu.Lock()
			if s.cache == nil {
				s.cache = map[string]cached{}
			}
			// Drop expired entries as we go so deleted clients do not linger.
			for k, v := range s.cache {
				if !now.Before(v.expires) {
					delete(s.cache, k)
				}
			}
			s.cache[id] = cached{client: c.clone(), expires: now.Add(ttl)}
			s.mu.Unlock()
		}
	}
	return c, nil
}

// GetClient implements fosite's ClientManager lookup: fosite.ErrNotFound for
// an unknown client.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// List returns every client, by id.
func (s *Store) List(ctx context.Context) ([]Client, error) {
	rows, err := db.Conn(ctx, s.Pool).Query(ctx, `SELECT `+clientColumns+` FROM oauth_clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("clients: list: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Client, error) {
		c, err := scanClient(row)
		if err != nil {
			return Client{}, err
		}
		return *c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("clients: list: %w", err)
	}
	return list, nil
}

// tokenTables hold the fosite grants of a client; they name the client in a
// column without a foreign key (fosite writes them), so Delete clears them.
var tokenTables = []string{"oauth_authorize_codes", "oauth_access_tokens", "oauth_refresh_tokens"}

// Delete removes a client and, in the same transaction, every code and token
// issued to it (its client sessions go by cascade): a deleted client must
// not keep working through tokens it already holds. ErrNotFound when
// unknown.
func (s *Store) Delete(ctx context.Context, id string) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		for _, table := range tokenTables {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE client_id = $1`, id); err != nil {
				return err
			}
		}
		return nil
	})
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("clients: delete: %w", err)
	}
	return err
}

// serviceAccountProblem says why c cannot be an admin service account, or
// "": it must authenticate with a secret and use client_credentials.
func serviceAccountProblem(c Client) string {
	switch {
	case c.Public:
		return "an admin service account must be a confidential client: a public one has no secret to authenticate with"
	case !slices.Contains(c.GrantTypes, GrantClientCredentials):
		return "an admin service account needs the client_credentials grant (--grant-type client_credentials)"
	}
	return ""
}

// SetAdminServiceAccount marks the client id as an admin service account,
// or removes the mark, and adds AdminScope to its scopes when marking.
// Removing the mark takes effect at the admin API's next request, on every
// instance (the API reads it from the database, not from the cache).
// ErrNotFound for an unknown client; ErrInvalid (wrapping why) for one that
// cannot be a service account. Inside the caller's transaction when ctx
// carries one, so the change and its audit record commit together.
func (s *Store) SetAdminServiceAccount(ctx context.Context, id string, on bool) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		c, err := scanClient(db.Conn(ctx, s.Pool).QueryRow(ctx,
			`SELECT `+clientColumns+` FROM oauth_clients WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if why := serviceAccountProblem(*c); on && why != "" {
			return fmt.Errorf("%w: %s", ErrInvalid, why)
		}
		_, err = db.Conn(ctx, s.Pool).Exec(ctx, `
			UPDATE oauth_clients SET admin_service_account = $2,
				scopes = CASE WHEN $2 AND NOT $3 = ANY (scopes) THEN array_append(scopes, $3) ELSE scopes END
			WHERE id = $1`, id, on, AdminScope)
		return err
	})
	s.forget(id)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	case err != nil && !errors.Is(err, ErrInvalid):
		return fmt.Errorf("clients: set admin service account: %w", err)
	}
	return err
}

// IsAdminServiceAccount reports whether the client id is an admin service
// account now. It reads the database, never the cache: the admin API asks
// on every request, so that removing the mark, or the client, stops the
// client at once. An unknown client is not one.
func (s *Store) IsAdminServiceAccount(ctx context.Context, id string) (bool, error) {
	if !validID.MatchString(id) {
		return false, nil
	}
	var on bool
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, `SELECT admin_service_account FROM oauth_clients WHERE id = $1`, id).Scan(&on)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clients: is admin service account: %w", err)
	}
	return on, nil
}

// SetRequirePAR makes the client id take authorization requests only
// through PAR (on), or through either way. It takes effect on other
// instances within their cache's TTL. ErrNotFound for an unknown client.
// Inside the caller's transaction when ctx carries one.
func (s *Store) SetRequirePAR(ctx context.Context, id string, on bool) error {
	return s.set(ctx, id, "set require PAR", "require_pushed_authorization_requests", on)
}

// SetDPoPBound makes the client id get tokens only with a DPoP proof (on;
// RFC 9449's dpop_bound_access_tokens), or with or without one. Tokens
// already issued keep their binding, or lack of one. It takes effect on
// other instances within their cache's TTL. ErrNotFound for an unknown
// client. Inside the caller's transaction when ctx carries one.
func (s *Store) SetDPoPBound(ctx context.Context, id string, on bool) error {
	return s.set(ctx, id, "set DPoP-bound", "dpop_bound_access_tokens", on)
}

// SetAccessTokenFormat makes the client id's access tokens from now on
// AccessTokenOpaque or AccessTokenJWT; tokens already issued stay as they
// are. It takes effect on other instances within their cache's TTL.
// ErrInvalid (wrapping why) for another format, ErrNotFound for an
// unknown client. Inside the caller's transaction when ctx carries one.
func (s *Store) SetAccessTokenFormat(ctx context.Context, id, format string) error {
	if format == "" {
		return fmt.Errorf("%w: no access token format", ErrInvalid)
	}
	if why := normalizeAccessToken(&Client{AccessTokenFormat: format}); len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, why[0])
	}
	return s.set(ctx, id, "set access token format", "access_token_format", format)
}

// set is one column of the client id's row, for the setters above (column
// is always theirs, never input).
func (s *Store) set(ctx context.Context, id, op, column string, v any) error {
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `UPDATE oauth_clients SET `+column+` = $2 WHERE id = $1`, id, v)
	s.forget(id)
	if err != nil {
		return fmt.Errorf("clients: %s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return nil
}

// forget drops id from this instance's cache.
func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}
