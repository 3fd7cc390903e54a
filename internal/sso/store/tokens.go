package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// kind is one token table and the session expiry that goes in its
// expires_at column.
type kind struct {
	name   string // for error messages
	expiry fosite.TokenType
	insert string // the shared columns, then the table's own (create's extra)
	own    int    // how many columns of its own the insert sets
	get    string
	del    string
}

// newKind describes table; columns are the table's own columns that an
// insert sets after the shared ones.
func newKind(name, table string, expiry fosite.TokenType, columns ...string) kind {
	cols := []string{"signature_hash", "request_id", "client_id", "subject", "sid", "requested_at", "expires_at", "request"}
	cols = append(cols, columns...)
	params := make([]string, len(cols))
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	return kind{
		name:   name,
		expiry: expiry,
		insert: `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` + strings.Join(params, ", ") + `)`,
		own:    len(columns),
		get:    `SELECT active, request FROM ` + table + ` WHERE signature_hash = $1`,
		del:    `DELETE FROM ` + table + ` WHERE signature_hash = $1`,
	}
}

// A code's PKCE and OpenID Connect sessions are forms in its row
// (pkce_form, oidc_form): they are copies of the code's request with
// another form, and live exactly as long as the code.
var (
	authorizeCodes = newKind("authorize code", "oauth_authorize_codes", fosite.AuthorizeCode, "pkce_form", "oidc_form")
	accessTokens   = withGet(newKind("access token", "oauth_access_tokens", fosite.AccessToken, "offline"),
		// An access token of a session that has idled or aged out is dead
		// at once, not when the janitor next ends the session (revoking
		// it deletes the token). offline_access grants outlive their
		// session by design, and so do their access tokens.
		`SELECT a.active AND NOT EXISTS (
			SELECT 1 FROM sso_sessions s WHERE s.id = a.sid AND NOT a.offline
			  AND s.revoked_at IS NULL AND least(s.idle_expires_at, s.absolute_expires_at) <= $2),
			a.request
		FROM oauth_access_tokens a WHERE a.signature_hash = $1`)
	refreshTokens = newKind("refresh token", "oauth_refresh_tokens", fosite.RefreshToken, "access_signature_hash", "offline")
)

func withGet(k kind, get string) kind { k.get = get; return k }

// offline reports an offline_access grant: it survives a sign-out (but not
// an administrator's revoke-all, see sessions.Revoke).
func offline(r fosite.Requester) bool { return r.GetGrantedScopes().Has("offline_access") }

// create queues the insert of r under sig into k's table; extra are the
// values of k's own columns, NULL where not given.
func (s *Store) create(ctx context.Context, k kind, sig string, r fosite.Requester, extra ...any) (*db.Queued, error) {
	u, err := unit(ctx, "create "+k.name)
	if err != nil {
		return nil, err
	}
	var jkt string
	if k.expiry == fosite.AccessToken || k.expiry == fosite.RefreshToken {
		jkt, _ = boundKeyFrom(ctx)
	}
	rw, err := newRow(r, k.expiry, jkt)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", k.name, err)
	}
	args := []any{HashSignature(sig), rw.requestID, rw.clientID, rw.subject, rw.sid, rw.requestedAt, rw.expiresAt, rw.request}
	args = append(args, extra...)
	for range k.own - len(extra) {
		args = append(args, nil)
	}
	return u.Queue(k.insert, args...).MapErr(mapDBErr("create " + k.name)), nil
}

// queue queues a write of op in the unit in ctx.
func (s *Store) queue(ctx context.Context, op string, sql string, args ...any) error {
	u, err := unit(ctx, op)
	if err != nil {
		return err
	}
	u.Queue(sql, args...).MapErr(mapDBErr(op))
	return nil
}

// get returns the request stored under sig and whether its row is active.
func (s *Store) get(ctx context.Context, k kind, sig string, proto fosite.Session, args ...any) (*fosite.Request, bool, error) {
	var (
		active bool
		doc    []byte
	)
	args = append([]any{HashSignature(sig)}, args...)
	if err := db.Conn(ctx, s.Pool).QueryRow(ctx, k.get, args...).Scan(&active, &doc); err != nil {
		return nil, false, dbErr("get "+k.name, err)
	}
	req, err := s.decodeDoc(ctx, k.name, doc, proto)
	if err != nil {
		return nil, false, err
	}
	return req, active, nil
}

// decodeDoc is decode for the get of kind name.
func (s *Store) decodeDoc(ctx context.Context, name string, doc []byte, proto fosite.Session) (*fosite.Request, error) {
	req, err := s.decode(ctx, doc, proto)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", name, err)
	}
	return req, nil
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. The
// INSERT waits with room for the forms of the code's PKCE and OpenID
// Connect sessions, which fosite stores next.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	p := &pendingCode{key: HashSignature(code), req: r, pkce: &lateJSON{}, oidc: &lateJSON{}}
	q, err := s.create(ctx, authorizeCodes, code, r, p.pkce, p.oidc)
	if err != nil {
		return err
	}
	if req, ok := requestFrom(ctx); ok {
		p.stmt = q
		req.issuing = p
	}
	return nil
}

// readCode returns the code under key with its sessions' forms, reading it
// once per request: fosite reads a code twice in an exchange, then its
// PKCE and OpenID Connect sessions.
func (s *Store) readCode(ctx context.Context, key []byte, proto fosite.Session) (*codeRead, error) {
	if c, ok := cachedCode(ctx, key); ok {
		return c, nil
	}
	c := &codeRead{key: key}
	var doc []byte
	err := db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT active, request, pkce_form, oidc_form FROM oauth_authorize_codes WHERE signature_hash = $1`,
		key).Scan(&c.active, &doc, &c.pkceForm, &c.oidcForm)
	if err != nil {
		return nil, dbErr("get authorize code", err)
	}
	if c.req, err = s.decodeDoc(ctx, authorizeCodes.name, doc, proto); err != nil {
		return nil, err
	}
	if req, ok := requestFrom(ctx); ok {
		req.code = c
	}
	return c, nil
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. A used
// code comes back with its request and fosite.ErrInvalidatedAuthorizeCode:
// fosite needs the request id to revoke every token issued from the code.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, proto fosite.Session) (fosite.Requester, error) {
	c, err := s.readCode(ctx, HashSignature(code), proto)
	if err != nil {
		return nil, err
	}
	if !c.active {
		return c.req, fmt.Errorf("store: get authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return c.req, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage:
// fosite calls it first when it exchanges a code, before it writes the
// tokens.
//
// Two statements, which fail the unit (and so the tokens queued after them)
// when they do not hold. The first checks that the code's SSO session is
// live and holds its share lock until the unit commits, so a revocation
// either ends the session first (the exchange fails with
// sessions.ErrSessionEnded, which the token endpoint answers as
// invalid_grant) or waits and then revokes these tokens too. The second
// invalidates only an active code, so of two concurrent exchanges of one
// code the second (blocked on the row lock, then re-checking active) fails
// with fosite.ErrInvalidatedAuthorizeCode: a code buys one set of tokens.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	u, err := unit(ctx, "invalidate authorize code")
	if err != nil {
		return err
	}
	key := HashSignature(code)
	u.Queue(`SELECT idp_assert(c.sid IS NULL OR EXISTS (`+sessions.LiveSQL("c.sid", "$2")+`), 'session ended')
		FROM oauth_authorize_codes c WHERE c.signature_hash = $1`, key, s.now()).
		MapErr(sessionEnded("invalidate authorize code"))
	// A form read with the code in this request is cleared by the same
	// UPDATE: fosite reads it next (from the read) and then deletes it.
	// Anywhere else it must outlive the invalidation: fosite has yet to
	// read it. The PKCE form's deletion, queued before (fosite spends it
	// while checking the verifier), is folded in too: the UPDATE clears it,
	// and the deletion goes out on its own only if this UPDATE is rolled
	// back to fosite's mark before the unit commits.
	c, read := cachedCode(ctx, key)
	clearOIDC := read && c.oidcForm != nil
	forms := ""
	if clearOIDC {
		forms = ", oidc_form = NULL"
	}
	var pkceClear *db.Queued
	if read && c.pkceClear != nil && u.Waits(c.pkceClear) {
		pkceClear = c.pkceClear
		forms += ", pkce_form = NULL"
	}
	inv := u.Queue(`
		WITH u AS (
			UPDATE oauth_authorize_codes SET active = false`+forms+`
			WHERE signature_hash = $1 AND active
			RETURNING 1
		)
		SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'authorize code is used or unknown')`, key).
		MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return fmt.Errorf("store: invalidate authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
			}
			return dbErr("invalidate authorize code", err)
		})
	if pkceClear != nil {
		pkceClear.AbsorbedBy(inv)
	}
	if clearOIDC {
		c.oidcCleared = true
	}
	return nil
}

// sessionEnded maps a failed session-live assertion to
// sessions.ErrSessionEnded.
func sessionEnded(op string) func(error) error {
	return func(err error) error {
		if db.IsAssertFailure(err) {
			return fmt.Errorf("store: %s: %w", op, sessions.ErrSessionEnded)
		}
		return dbErr(op, err)
	}
}

// setForm writes a code's session form into the code's row: into its
// INSERT if that still waits in this request, else by an UPDATE, which
// fails the unit when the code does not exist.
func (s *Store) setForm(ctx context.Context, name, column string, key []byte, r fosite.Requester, late func(*pendingCode) *lateJSON) error {
	u, err := unit(ctx, "create "+name)
	if err != nil {
		return err
	}
	attached, err := attachForm(ctx, u, key, r, late)
	if err != nil || attached {
		return err
	}
	doc, err := json.Marshal(storedForm(r))
	if err != nil {
		return fmt.Errorf("store: create %s: marshal form: %w", name, err)
	}
	u.Queue(`
		WITH u AS (UPDATE oauth_authorize_codes SET `+column+` = $2 WHERE signature_hash = $1 RETURNING 1)
		SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'no authorize code for the session')`, key, doc).
		MapErr(mapDBErr("create " + name))
	return nil
}

// getForm returns a code's session (name, stored in column of the code's
// row) as the code's request with that form: from this request's read of
// the code, or read now.
func (s *Store) getForm(ctx context.Context, name, column string, key []byte, proto fosite.Session, cached func(*codeRead) []byte) (fosite.Requester, error) {
	if c, ok := cachedCode(ctx, key); ok {
		if form := cached(c); form != nil {
			return formRequest(c.req, form, name)
		}
		return nil, fmt.Errorf("store: get %s: %w", name, fosite.ErrNotFound)
	}
	var doc, form []byte
	err := db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT request, `+column+` FROM oauth_authorize_codes WHERE signature_hash = $1 AND `+column+` IS NOT NULL`,
		key).Scan(&doc, &form)
	if err != nil {
		return nil, dbErr("get "+name, err)
	}
	req, err := s.decodeDoc(ctx, name, doc, proto)
	if err != nil {
		return nil, err
	}
	return formRequest(req, form, name)
}

// clearForm deletes a code's session form (fosite deletes what it has
// read; deleting one already gone is no failure) and returns the waiting
// statement.
func (s *Store) clearForm(ctx context.Context, name, column string, key []byte) (*db.Queued, error) {
	op := "delete " + name
	u, err := unit(ctx, op)
	if err != nil {
		return nil, err
	}
	return u.Queue(`UPDATE oauth_authorize_codes SET `+column+` = NULL WHERE signature_hash = $1 AND `+column+` IS NOT NULL`, key).
		MapErr(mapDBErr(op)), nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage: the form
// in the code's row.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.setForm(ctx, "pkce", "pkce_form", HashSignature(sig), r, func(p *pendingCode) *lateJSON { return p.pkce })
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	return s.getForm(ctx, "pkce", "pkce_form", HashSignature(sig), proto, func(c *codeRead) []byte { return c.pkceForm })
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	key := HashSignature(sig)
	c, read := cachedCode(ctx, key)
	if read {
		if c.pkceForm == nil {
			return nil
		}
		c.pkceForm = nil
	}
	q, err := s.clearForm(ctx, "pkce", "pkce_form", key)
	if read {
		c.pkceClear = q
	}
	return err
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
// fosite passes the raw authorization code; the session is the form in
// that code's row.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.setForm(ctx, "oidc", "oidc_form", HashSignature(codeSignature(code)), r, func(p *pendingCode) *lateJSON { return p.oidc })
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage. The
// session is the code's request with the session's form; its session is
// unmarshalled into that of the token request. It is still answered after
// the code's invalidation cleared the form in this request: fosite reads it
// after invalidating the code.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	var proto fosite.Session
	if r != nil {
		proto = r.GetSession()
	}
	return s.getForm(ctx, "oidc", "oidc_form", HashSignature(codeSignature(code)), proto, func(c *codeRead) []byte { return c.oidcForm })
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
// A form that went out with the code's invalidation needs nothing more.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	key := HashSignature(codeSignature(code))
	if c, ok := cachedCode(ctx, key); ok {
		if c.oidcForm == nil || c.oidcCleared {
			c.oidcForm = nil
			return nil
		}
		c.oidcForm = nil
	}
	_, err := s.clearForm(ctx, "oidc", "oidc_form", key)
	return err
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	_, err := s.create(ctx, accessTokens, sig, r, offline(r))
	return err
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage. A token that
// is inactive, or whose SSO session has timed out (see accessTokens), comes
// back with fosite.ErrInactiveToken.
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, accessTokens, sig, proto, s.now())
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fmt.Errorf("store: get access token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.queue(ctx, "delete access token", accessTokens.del, HashSignature(sig))
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage. The
// access token issued with it is remembered so rotation can delete it, and
// an offline_access grant is flagged so a sign-out can spare it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	var accessHash []byte
	if accessSig != "" {
		accessHash = HashSignature(accessSig)
	}
	_, err := s.create(ctx, refreshTokens, sig, r, accessHash, offline(r))
	return err
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A rotated or
// revoked token comes back with its request and fosite.ErrInactiveToken:
// fosite treats that as reuse and revokes the whole grant by request id.
//
// At the token and revocation endpoints (WithBoundKey), a public
// client's refresh token bound to a DPoP key is refused with ErrWrongKey
// unless the request's proof is by that key: without a secret, the key is
// all that makes the refresh token the client's (RFC 9449 §5). The
// request is not returned with it: the token was not used, so its grant
// is not revoked.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, refreshTokens, sig, proto)
	if err != nil {
		return nil, err
	}
	if jkt, atTokenEndpoint := boundKeyFrom(ctx); atTokenEndpoint && active {
		if bound := BoundKey(req); bound != "" && bound != jkt && req.GetClient() != nil && req.GetClient().IsPublic() {
			return nil, fmt.Errorf("store: get refresh token: %w", ErrWrongKey)
		}
	}
	if !active {
		return req, fmt.Errorf("store: get refresh token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.queue(ctx, "delete refresh token", refreshTokens.del, HashSignature(sig))
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: fosite calls
// it first when it refreshes, before it writes the new tokens. The token is
// deactivated rather than deleted so a later reuse is recognised as such,
// and the access token issued with it is deleted.
//
// Two statements, which fail the unit (and so the new tokens queued after
// them) when they do not hold. The first checks, for a grant bound to its
// SSO session, that the session is live, holding its share lock until the
// unit commits (see InvalidateAuthorizeCodeSession); an offline grant
// outlives its session, but not an administrator's revoke-all, which locks
// the account first: its refresh holds the account's share lock instead.
// The second only takes an active row: of two concurrent refreshes of one
// token the second blocks on the first's row lock, then finds the row
// inactive and fails with fosite.ErrInactiveToken; exactly one refresh
// wins. requestID is not needed: the signature names the token.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	u, err := unit(ctx, "rotate refresh token")
	if err != nil {
		return err
	}
	key := HashSignature(sig)
	u.Queue(`SELECT idp_assert(CASE WHEN r.offline OR r.sid IS NULL
			THEN EXISTS (SELECT 1 FROM users WHERE id = (CASE WHEN r.subject ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
				THEN r.subject::uuid END) FOR SHARE)
			ELSE EXISTS (`+sessions.LiveSQL("r.sid", "$2")+`) END, 'session ended')
		FROM oauth_refresh_tokens r WHERE r.signature_hash = $1 AND r.active`, key, s.now()).
		MapErr(sessionEnded("rotate refresh token"))
	u.Queue(`
		WITH r AS (
			UPDATE oauth_refresh_tokens SET active = false
			WHERE signature_hash = $1 AND active
			RETURNING access_signature_hash
		), a AS (
			DELETE FROM oauth_access_tokens WHERE signature_hash IN (SELECT access_signature_hash FROM r)
		)
		SELECT idp_assert(EXISTS (SELECT 1 FROM r), 'refresh token is rotated, revoked or unknown')`, key).
		MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return fmt.Errorf("store: rotate refresh token: %w", fosite.ErrInactiveToken)
			}
			return dbErr("rotate refresh token", err)
		})
	return nil
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: every refresh
// token of the grant is deactivated, so presenting one later is seen as
// reuse rather than as an unknown token.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.queue(ctx, "revoke refresh token",
		`UPDATE oauth_refresh_tokens SET active = false WHERE request_id = $1 AND active`, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: every access
// token of the grant is deleted.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.queue(ctx, "revoke access token", `DELETE FROM oauth_access_tokens WHERE request_id = $1`, requestID)
}

// IsSessionEnded reports whether err is a token request that failed
// because its SSO session had ended (see InvalidateAuthorizeCodeSession).
func IsSessionEnded(err error) bool { return errors.Is(err, sessions.ErrSessionEnded) }
