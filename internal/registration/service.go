package registration

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/throttle"
)

// OpenNative is the one kind of open registration (IDP_OPEN_REGISTRATION):
// anyone may register a public native client, one that authenticates with
// nothing (token_endpoint_auth_method none, PKCE) and is redirected only to
// a loopback address on its own machine (RFC 8252 §7.3). Such a client
// can reach no one else's browser, so it needs no operator's word.
const OpenNative = "native"

// Audit actions.
const (
	ActionRegister = "clients.register"
	ActionUpdate   = "clients.update"
	ActionDelete   = "clients.delete" // as `idp clients delete`
	// ActionIssueToken is an operator making an initial access token.
	ActionIssueToken = "clients.registration_token"
)

// Error is a refusal in the format of RFC 7591 §3.2.2 (and RFC 6750 for
// a token): Code is invalid_redirect_uri, invalid_client_metadata or
// invalid_token.
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter is how long a throttled request must wait.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return "registration: " + e.Code + ": " + e.Description }

func invalidMetadata(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_client_metadata", Description: fmt.Sprintf(format, args...)}
}

func invalidRedirect(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_redirect_uri", Description: fmt.Sprintf(format, args...)}
}

func invalidToken(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc}
}

// Service registers and manages clients by API.
type Service struct {
	Pool    *pgxpool.Pool
	Clients *clients.Store
	Tokens  *Tokens
	// Open is OpenNative to let public native clients register without
	// an initial access token; "" to require one.
	Open string
	// OpenLimiter, when set, slows down open registrations from one
	// address: each one counts, and past its free ones an address waits.
	OpenLimiter *throttle.Limiter
	// Issuer makes the registration_client_uri.
	Issuer string
	Now    func() time.Time
}

// Response is the client information response (RFC 7591 §3.2.1, RFC 7592
// §3): the client's credentials and everything it has registered.
type Response struct {
	ClientID string `json:"client_id"`
	// ClientSecret is returned once, at registration: only its hash is
	// kept.
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
	// RegistrationAccessToken is made at registration and never rotated;
	// reads and updates answer with the one presented.
	RegistrationAccessToken string `json:"registration_access_token"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	Metadata
}

// Enabled reports whether a client can be registered now: registration is
// open, or an initial access token is live.
func (s *Service) Enabled(ctx context.Context) (bool, error) {
	if s.Open == OpenNative {
		return true, nil
	}
	return s.Tokens.Live(ctx)
}

// Register registers the client m describes: with an initial access token
// (spent in the same transaction), or without one ("") when registration
// is open to native clients, from the client address addr. Nothing is
// stored when it is refused (*Error).
func (s *Service) Register(ctx context.Context, initialToken, addr string, m Metadata) (Response, error) {
	open := initialToken == ""
	if open && s.Open != OpenNative {
		return Response{}, invalidToken("registration needs an initial access token from the operator (idp clients registration-token), sent as a Bearer token")
	}
	if err := check(m, open); err != nil {
		return Response{}, err
	}
	if open {
		if err := checkNative(m); err != nil {
			return Response{}, err
		}
	}
	throttleKey := "registration:open:" + addr
	if open && s.OpenLimiter != nil {
		wait, err := s.OpenLimiter.Wait(ctx, throttleKey)
		if err != nil {
			return Response{}, err
		}
		if wait > 0 {
			return Response{}, &Error{Status: http.StatusTooManyRequests, Code: "invalid_request", RetryAfter: wait,
				Description: "too many clients registered from this address; try again later"}
		}
	}
	id := newClientID()
	access := newToken()
	actor := "registration:open"
	if !open {
		actor = "registration_token:" + TokenID(initialToken)
	}
	var resp Response
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if open && s.OpenLimiter != nil {
			s.OpenLimiter.QueueFail(ctx, throttleKey) // counted only when it commits
		}
		if !open {
			if err := s.Tokens.spend(ctx, initialToken); errors.Is(err, ErrInvalidToken) {
				return invalidToken("the initial access token is unknown, expired or used up")
			} else if err != nil {
				return err
			}
		}
		c := m.client(id)
		secret, err := s.Clients.Create(ctx, c)
		if err != nil {
			return metadataError(err)
		}
		if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `INSERT INTO client_registrations (client_id, access_token_hash, open, created_at)
			VALUES ($1, $2, $3, $4)`, id, hash(access), open, s.Now()); err != nil {
			return fmt.Errorf("registration: register: %w", err)
		}
		stored, err := s.Clients.Get(ctx, id)
		if err != nil {
			return err
		}
		resp = s.response(stored, access)
		resp.ClientSecret = secret
		return audit.Record(ctx, s.Now(), actor, ActionRegister, audit.Client(id), details(stored))
	})
	if err != nil {
		return Response{}, err
	}
	return resp, nil
}

// Read returns what the client id has registered, to the holder of its
// registration access token.
func (s *Service) Read(ctx context.Context, id, token string) (Response, error) {
	if _, err := s.authenticate(ctx, id, token, false); err != nil {
		return Response{}, err
	}
	c, err := s.Clients.Get(ctx, id)
	if err != nil {
		return Response{}, err
	}
	return s.response(c, token), nil
}

// Update replaces the metadata of the client id with m (RFC 7592 §2.2:
// what m leaves out is reset to its default), validated as a
// registration is. It rotates no credential: the secret, the keys'
// authentication method and the registration access token stay.
// requestID and requestSecret are the client_id and client_secret of the
// request, which must be the client's own.
func (s *Service) Update(ctx context.Context, id, token string, m Metadata, requestID, requestSecret string) (Response, error) {
	var resp Response
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		open, err := s.authenticate(ctx, id, token, true)
		if err != nil {
			return err
		}
		if requestID != id {
			return invalidMetadata("client_id must be given and be this client's, %q", id)
		}
		if err := check(m, open); err != nil {
			return err
		}
		if open {
			if err := checkNative(m); err != nil {
				return err
			}
		}
		cur, err := s.Clients.Get(ctx, id)
		if err != nil {
			return err
		}
		if requestSecret != "" && (clients.SecretHasher{}).Compare(ctx, cur.SecretHash, []byte(requestSecret)) != nil {
			return invalidMetadata("client_secret is not this client's secret")
		}
		c := m.client(id)
		if authKind(c.TokenEndpointAuthMethod) != authKind(cur.GetTokenEndpointAuthMethod()) {
			return invalidMetadata("token_endpoint_auth_method cannot change from %s to %s: that would issue or drop a credential; register a new client",
				cur.GetTokenEndpointAuthMethod(), c.TokenEndpointAuthMethod)
		}
		if err := s.Clients.Replace(ctx, c); err != nil {
			return metadataError(err)
		}
		stored, err := s.Clients.Get(ctx, id)
		if err != nil {
			return err
		}
		resp = s.response(stored, token)
		return audit.Record(ctx, s.Now(), audit.Client(id), ActionUpdate, audit.Client(id), details(stored))
	})
	if err != nil {
		return Response{}, err
	}
	return resp, nil
}

// Delete removes the client id, and with it its codes and tokens and its
// client sessions (clients.Store.Delete), and its registration.
func (s *Service) Delete(ctx context.Context, id, token string) error {
	return db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if _, err := s.authenticate(ctx, id, token, true); err != nil {
			return err
		}
		if err := s.Clients.Delete(ctx, id); err != nil {
			return err
		}
		return audit.Record(ctx, s.Now(), audit.Client(id), ActionDelete, audit.Client(id), map[string]bool{"registration_api": true})
	})
}

// authenticate checks that token is the registration access token of the
// client id, comparing hashes in constant time, and reports whether the
// client was registered openly. lock holds the registration's row until
// the transaction in ctx ends. A client registered by an operator has no
// such token and is never managed here.
func (s *Service) authenticate(ctx context.Context, id, token string, lock bool) (open bool, err error) {
	bad := invalidToken("the registration access token is not valid for this client")
	if token == "" {
		return false, invalidToken("the registration access token is missing: send it as a Bearer token")
	}
	q := `SELECT access_token_hash, open FROM client_registrations WHERE client_id = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	var stored []byte
	err = db.Conn(ctx, s.Pool).QueryRow(ctx, q, id).Scan(&stored, &open)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, bad
	}
	if err != nil {
		return false, fmt.Errorf("registration: authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash(token)) != 1 {
		return false, bad
	}
	return open, nil
}

func (s *Service) response(c *clients.Client, access string) Response {
	r := Response{
		ClientID:                c.ID,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		RegistrationAccessToken: access,
		RegistrationClientURI:   s.Issuer + "/oauth2/register/" + url.PathEscape(c.ID),
		Metadata:                metadataOf(c),
	}
	if len(c.SecretHash) > 0 {
		never := int64(0) // the secret does not expire
		r.ClientSecretExpiresAt = &never
	}
	return r
}

// details is what the audit log keeps of a registered client (no secret).
func details(c *clients.Client) map[string]any {
	return map[string]any{"public": c.Public, "client_name": c.Name, "redirect_uris": c.RedirectURIs,
		"grant_types": c.GrantTypes, "scopes": c.Scopes, "backchannel_logout_uri": c.BackchannelLogoutURI,
		"token_endpoint_auth_method": c.GetTokenEndpointAuthMethod(), "jwks_uri": c.JWKSURI,
		"require_pushed_authorization_requests": c.RequirePAR, "dpop_bound_access_tokens": c.DPoPBoundAccessTokens}
}

// metadataError is the refusal of metadata that clients.Store refused;
// other errors pass.
func metadataError(err error) error {
	if errors.Is(err, clients.ErrInvalid) {
		return invalidMetadata("%s", strings.TrimPrefix(err.Error(), clients.ErrInvalid.Error()+": "))
	}
	return err
}

// check refuses what a client registered by API may not have, beyond
// what clients.Store refuses: see checkRedirects, and the admin scope.
// An administrator who consented to a stranger's client with that scope
// would hand it the admin API; only clients an operator registers (and
// vouches for) may ask for it.
func check(m Metadata, open bool) error {
	if err := checkRedirects(m, open); err != nil {
		return err
	}
	if slices.Contains(strings.Fields(m.Scope), clients.AdminScope) {
		return invalidMetadata("scope %q is only for clients an operator registers (idp clients create)", clients.AdminScope)
	}
	return nil
}

// checkRedirects refuses a redirect URI that `idp clients create` would
// refuse, and for an open registration one that is not a loopback
// address, as invalid_redirect_uri.
func checkRedirects(m Metadata, open bool) error {
	for _, u := range m.RedirectURIs {
		if err := clients.CheckRedirectURI(u); err != nil {
			return invalidRedirect("%s", strings.TrimPrefix(err.Error(), clients.ErrInvalid.Error()+": "))
		}
		if p, _ := url.Parse(u); open && (p.Scheme != "http" || !clients.IsLoopback(p.Hostname())) {
			return invalidRedirect("redirect URI %q: open registration takes only native apps, redirected to a loopback address "+
				"such as http://127.0.0.1:PORT/callback (RFC 8252 §7.3); other apps need an initial access token", u)
		}
	}
	return nil
}

// nativeGrants are the grants of an openly registered client.
var nativeGrants = []string{clients.GrantAuthorizationCode, clients.GrantRefreshToken}

// checkNative refuses what an openly registered client may not be: one
// with a credential, another grant, or anything the provider would call.
func checkNative(m Metadata) error {
	switch {
	case m.TokenEndpointAuthMethod != "none":
		return invalidMetadata("open registration takes only public native clients: token_endpoint_auth_method must be none " +
			"(the app uses PKCE); a confidential client needs an initial access token")
	case len(m.RedirectURIs) == 0:
		return invalidRedirect("open registration needs at least one loopback redirect URI")
	case m.BackchannelLogoutURI != "" || len(m.JWKS) > 0 || m.JWKSURI != "":
		return invalidMetadata("an openly registered native client has no back-channel logout URI and no keys")
	}
	for _, g := range m.GrantTypes {
		if !slices.Contains(nativeGrants, g) {
			return invalidMetadata("grant type %q: an openly registered native client may use only %s", g, strings.Join(nativeGrants, " and "))
		}
	}
	return nil
}

// newClientID is 128 random bits, base64url: a valid client id
// (A-Z a-z 0-9 _ -) nobody can guess or choose.
func newClientID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
