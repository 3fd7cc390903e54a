package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/db"
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

// PKCE and OpenID Connect sessions live exactly as long as their code.
var (
	authorizeCodes = newKind("authorize code", "oauth_authorize_codes", fosite.AuthorizeCode, "pkce_form", "oidc_form")
	pkceSessions   = newKind("pkce", "oauth_pkce", fosite.AuthorizeCode)
	oidcSessions   = newKind("oidc", "oauth_oidc", fosite.AuthorizeCode)
	accessTokens   = newKind("access token", "oauth_access_tokens", fosite.AccessToken)
	refreshTokens  = newKind("refresh token", "oauth_refresh_tokens", fosite.RefreshToken, "access_signature_hash", "offline")
)

// create inserts r under sig into k's table; extra are the values of k's
// own columns, NULL where not given.
func (s *Store) create(ctx context.Context, k kind, sig string, r fosite.Requester, extra ...any) error {
	rw, err := newRow(r, k.expiry)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", k.name, err)
	}
	args := []any{HashSignature(sig), rw.requestID, rw.clientID, rw.subject, rw.sid, rw.requestedAt, rw.expiresAt, rw.request}
	args = append(args, extra...)
	for range k.own - len(extra) {
		args = append(args, nil)
	}
	return db.Exec(ctx, s.Pool, mapDBErr("create "+k.name), k.insert, args...)
}

// get returns the request stored under sig and whether its row is active.
func (s *Store) get(ctx context.Context, k kind, sig string, proto fosite.Session) (*fosite.Request, bool, error) {
	var (
		active bool
		doc    []byte
	)
	if err := db.Conn(ctx, s.Pool).QueryRow(ctx, k.get, HashSignature(sig)).Scan(&active, &doc); err != nil {
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

// del is idempotent: fosite deletes what it has just read, and a concurrent
// delete having won is not a failure of this one.
func (s *Store) del(ctx context.Context, k kind, key []byte) error {
	return db.Exec(ctx, s.Pool, mapDBErr("delete "+k.name), k.del, key)
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. In a
// Batched context the INSERT waits with room for the forms of the code's
// PKCE and OpenID Connect sessions, which fosite stores next.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	u, batched := unitFrom(ctx)
	w, waits := db.WriteBehindFrom(ctx)
	if !batched || !waits {
		return s.create(ctx, authorizeCodes, code, r)
	}
	p := &pendingCode{key: HashSignature(code), req: r, stmt: w.Len(), pkce: &lateJSON{}, oidc: &lateJSON{}}
	if err := s.create(ctx, authorizeCodes, code, r, p.pkce, p.oidc); err != nil {
		return err
	}
	u.issuing = p
	return nil
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. A used
// code comes back with its request and fosite.ErrInvalidatedAuthorizeCode:
// fosite needs the request id to revoke every token issued from the code.
//
// In a Batched context the code is read once, with its PKCE and OpenID
// Connect sessions, and later calls (fosite reads the code twice) are
// answered from that read.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, proto fosite.Session) (fosite.Requester, error) {
	var (
		req    *fosite.Request
		active bool
		err    error
	)
	if u, ok := unitFrom(ctx); ok {
		req, active, err = s.readCode(ctx, u, HashSignature(code), proto)
	} else {
		req, active, err = s.get(ctx, authorizeCodes, code, proto)
	}
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fmt.Errorf("store: get authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
// Only an active code is invalidated, so of two concurrent exchanges of one
// code the second (blocked on the row lock, then re-checking active) fails
// and fosite rolls back its tokens: a code buys one set of tokens. A used
// or unknown code is fosite.ErrInvalidatedAuthorizeCode.
//
// The failure is raised by the statement itself (idp_assert), so in a
// Batched context, where it waits to go out with the tokens fosite issues
// next, it rolls them back with it.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	key := HashSignature(code)
	// A form in the code's row read with it in this Batched request is
	// cleared by the same UPDATE (fosite reads it next, from the read, and
	// then deletes it). Anywhere else it must outlive the invalidation:
	// fosite has yet to read it.
	c, read := cachedCode(ctx, key)
	clearOIDC := read && c.oidcForm != nil && !c.oidcDeleted
	forms := ""
	if clearOIDC {
		forms = ", oidc_form = NULL"
	}
	err := db.Exec(ctx, s.Pool, func(err error) error {
		if db.IsAssertFailure(err) {
			return fmt.Errorf("store: invalidate authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
		}
		return dbErr("invalidate authorize code", err)
	}, `
		WITH u AS (
			UPDATE oauth_authorize_codes SET active = false`+forms+`
			WHERE signature_hash = $1 AND active
			RETURNING 1
		)
		SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'authorize code is used or unknown')`,
		key)
	if err != nil {
		return err
	}
	if clearOIDC {
		c.oidcDeleted = true
		return nil
	}
	return s.deleteOIDCWithCode(ctx, key)
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage. For the
// code being issued in a Batched context, the session is its form in the
// code's row.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	attached, err := attachForm(ctx, HashSignature(sig), r, func(p *pendingCode) *lateJSON { return p.pkce })
	if err != nil {
		return fmt.Errorf("store: create pkce: %w", err)
	}
	if attached {
		return nil
	}
	return s.create(ctx, pkceSessions, sig, r)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage. In a Batched
// context it is answered from the code's read. A session stored in the
// code's row is the code's request with the session's form.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	key := HashSignature(sig)
	if c, ok := cachedCode(ctx, key); ok {
		switch {
		case c.pkceForm != nil:
			return formRequest(c.req, c.pkceForm, "pkce")
		case c.pkce != nil:
			return s.decodeDoc(ctx, "pkce", c.pkce, proto)
		}
		return nil, fmt.Errorf("store: get pkce: %w", fosite.ErrNotFound)
	}
	req, _, err := s.get(ctx, pkceSessions, sig, proto)
	switch {
	case errors.Is(err, fosite.ErrNotFound):
		return s.getFormInCode(ctx, key, "pkce_form", "pkce", proto)
	case err != nil:
		return nil, err
	}
	return req, nil
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage: the row or
// the form in the code's row, whichever holds it (in a Batched context with
// the code read, it is known which).
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	key := HashSignature(sig)
	if c, ok := cachedCode(ctx, key); ok {
		if c.pkceForm != nil {
			return s.clearFormInCode(ctx, key, "pkce_form", "pkce")
		}
		return s.del(ctx, pkceSessions, key)
	}
	return db.Exec(ctx, s.Pool, mapDBErr("delete pkce"), `
		WITH row AS (DELETE FROM oauth_pkce WHERE signature_hash = $1)
		UPDATE oauth_authorize_codes SET pkce_form = NULL WHERE signature_hash = $1 AND pkce_form IS NOT NULL`, key)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
// fosite passes the raw authorization code; it is hashed like a signature.
// For the code being issued in a Batched context, the session is its form
// in the code's row.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	attached, err := attachForm(ctx, HashSignature(codeSignature(code)), r, func(p *pendingCode) *lateJSON { return p.oidc })
	if err != nil {
		return fmt.Errorf("store: create oidc: %w", err)
	}
	if attached {
		return nil
	}
	return s.create(ctx, oidcSessions, code, r)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage. The
// session is unmarshalled into that of the token request; one stored in the
// code's row is the code's request, whose session the code's read filled.
//
// In a Batched context the session read with the code is used.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	var proto fosite.Session
	if r != nil {
		proto = r.GetSession()
	}
	// Still answered after the code's invalidation cleared the form: fosite
	// reads the session after invalidating the code, in the same batch.
	if c, ok := cachedCodeOf(ctx, code); ok && c.oidcForm != nil {
		return formRequest(c.req, c.oidcForm, "oidc")
	}
	if doc, ok := cachedOIDC(ctx, HashSignature(code)); ok {
		return s.decodeDoc(ctx, "oidc", doc, proto)
	}
	req, _, err := s.get(ctx, oidcSessions, code, proto)
	switch {
	case errors.Is(err, fosite.ErrNotFound):
		return s.getFormInCode(ctx, HashSignature(codeSignature(code)), "oidc_form", "oidc", proto)
	case err != nil:
		return nil, err
	}
	return req, nil
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage:
// the row or the form in the code's row, whichever holds it. In a Batched
// context the session may already have gone out with the code's
// invalidation; then there is nothing left to do.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	key, codeKey := HashSignature(code), HashSignature(codeSignature(code))
	if oidcDeletedWithCode(ctx, key) {
		return nil
	}
	if c, ok := cachedCodeOf(ctx, code); ok {
		switch {
		case c.oidcForm == nil:
			return s.del(ctx, oidcSessions, key)
		case c.oidcDeleted:
			return nil
		}
		return s.clearFormInCode(ctx, codeKey, "oidc_form", "oidc")
	}
	return db.Exec(ctx, s.Pool, mapDBErr("delete oidc"), `
		WITH row AS (DELETE FROM oauth_oidc WHERE signature_hash = $1)
		UPDATE oauth_authorize_codes SET oidc_form = NULL WHERE signature_hash = $2 AND oidc_form IS NOT NULL`, key, codeKey)
}

// getFormInCode reads a session stored as column (pkce_form or oidc_form)
// of the code under key, outside a Batched read.
func (s *Store) getFormInCode(ctx context.Context, key []byte, column, name string, proto fosite.Session) (fosite.Requester, error) {
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

// clearFormInCode deletes a session stored as column of the code under key.
func (s *Store) clearFormInCode(ctx context.Context, key []byte, column, name string) error {
	return db.Exec(ctx, s.Pool, mapDBErr("delete "+name),
		`UPDATE oauth_authorize_codes SET `+column+` = NULL WHERE signature_hash = $1 AND `+column+` IS NOT NULL`, key)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, accessTokens, sig, r)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage. Revocation
// deletes access tokens, but other packages may deactivate them by SQL; an
// inactive one comes back with fosite.ErrInactiveToken.
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, accessTokens, sig, proto)
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
	return s.del(ctx, accessTokens, HashSignature(sig))
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage. The
// access token issued with it is remembered so rotation can delete it, and
// an offline_access grant is flagged so a sign-out can spare it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	var accessHash []byte
	if accessSig != "" {
		accessHash = HashSignature(accessSig)
	}
	return s.create(ctx, refreshTokens, sig, r, accessHash, r.GetGrantedScopes().Has("offline_access"))
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A rotated or
// revoked token comes back with its request and fosite.ErrInactiveToken:
// fosite treats that as reuse and revokes the whole grant by request id.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, refreshTokens, sig, proto)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fmt.Errorf("store: get refresh token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.del(ctx, refreshTokens, HashSignature(sig))
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage. The token is
// deactivated rather than deleted so a later reuse is recognised as such,
// and the access token issued with it is deleted.
//
// The UPDATE only takes an active row. Two concurrent refreshes of one token
// both reach it; the second blocks on the first's row lock and, once the
// first commits, finds the row inactive and touches nothing. It then gets
// fosite.ErrInactiveToken and fosite rolls back the tokens it was about to
// issue: exactly one refresh wins. requestID is not needed: the signature
// names the token. As with codes, the failure is raised by the statement
// (idp_assert), so in a Batched context it rolls back the new tokens queued
// with it.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	return db.Exec(ctx, s.Pool, func(err error) error {
		if db.IsAssertFailure(err) {
			return fmt.Errorf("store: rotate refresh token: %w", fosite.ErrInactiveToken)
		}
		return dbErr("rotate refresh token", err)
	}, `
		WITH r AS (
			UPDATE oauth_refresh_tokens SET active = false
			WHERE signature_hash = $1 AND active
			RETURNING access_signature_hash
		), a AS (
			DELETE FROM oauth_access_tokens WHERE signature_hash IN (SELECT access_signature_hash FROM r)
		)
		SELECT idp_assert(EXISTS (SELECT 1 FROM r), 'refresh token is rotated, revoked or unknown')`,
		HashSignature(sig))
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: every refresh
// token of the grant is deactivated, so presenting one later is seen as
// reuse rather than as an unknown token.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return db.Exec(ctx, s.Pool, mapDBErr("revoke refresh token"),
		`UPDATE oauth_refresh_tokens SET active = false WHERE request_id = $1 AND active`, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: every access
// token of the grant is deleted.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return db.Exec(ctx, s.Pool, mapDBErr("revoke access token"),
		`DELETE FROM oauth_access_tokens WHERE request_id = $1`, requestID)
}
