package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/db"
)

// Batched returns a context for one authorization or token request in which
// the store saves round trips, and the WriteBehind that holds its writes,
// which the caller flushes once before it answers (the token endpoint
// whether fosite succeeded or not):
//
//   - Writes wait (db.WriteBehind) and go out together: at fosite's Commit,
//     or at flush. Codes and token rotations that must still be unused are
//     checked by the statements themselves, so a failed check rolls back
//     the tokens sent with it. Reads do not see writes still waiting; none
//     of fosite's flows reads what it has just written.
//   - A token exchange reads its code, PKCE session and OpenID Connect
//     session in one statement; fosite's later reads of them (it reads the
//     code twice) are answered from that read.
//
// An authorization with a session then costs one round trip for its writes,
// a code exchange two (the read, and the commit), a refresh two.
func (s *Store) Batched(ctx context.Context) (context.Context, *db.WriteBehind) {
	ctx, w := db.WithWriteBehind(ctx, s.Pool)
	return context.WithValue(ctx, unitKey{}, &unit{}), w
}

type (
	unitKey    struct{}
	batchTxKey struct{} // BeginTX in a Batched context: how many writes waited before it
)

// unit is what one Batched request has read.
type unit struct {
	code *codeRead
}

// codeRead is an authorization code read with its PKCE and OpenID Connect
// sessions.
type codeRead struct {
	key    []byte // HashSignature of the code's signature
	req    *fosite.Request
	active bool
	pkce   []byte // the PKCE session's document; nil when there is none
	// oidcKey is the OpenID Connect session's key (the hash of the whole
	// code, which fosite passes for it) and oidc its document; nil when
	// there is none.
	oidcKey, oidc []byte
	// oidcDeleted: the OpenID Connect session was deleted with the code's
	// invalidation.
	oidcDeleted bool
}

func unitFrom(ctx context.Context) (*unit, bool) {
	u, ok := ctx.Value(unitKey{}).(*unit)
	return u, ok
}

// batchTx returns the WriteBehind when ctx is inside BeginTX in a Batched
// context.
func batchTx(ctx context.Context) (*db.WriteBehind, bool) {
	if _, ok := ctx.Value(batchTxKey{}).(int); !ok {
		return nil, false
	}
	return db.WriteBehindFrom(ctx)
}

// readCode returns the code under key, reading it with its PKCE and OpenID
// Connect sessions the first time in u. The OpenID Connect session is found
// by the authorization request's id, which it shares with the code.
func (s *Store) readCode(ctx context.Context, u *unit, key []byte, proto fosite.Session) (*fosite.Request, bool, error) {
	if c := u.code; c != nil && bytes.Equal(c.key, key) {
		return c.req, c.active, nil
	}
	c := &codeRead{key: key}
	var doc []byte
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, `
		SELECT c.active, c.request, p.request, o.signature_hash, o.request
		FROM oauth_authorize_codes c
		LEFT JOIN oauth_pkce p ON p.signature_hash = c.signature_hash
		LEFT JOIN oauth_oidc o ON o.request_id = c.request_id
		WHERE c.signature_hash = $1`,
		key).Scan(&c.active, &doc, &c.pkce, &c.oidcKey, &c.oidc)
	if err != nil {
		return nil, false, dbErr("get authorize code", err)
	}
	if c.req, err = s.decodeDoc(ctx, authorizeCodes.name, doc, proto); err != nil {
		return nil, false, err
	}
	u.code = c
	return c.req, c.active, nil
}

// cachedCode returns the code read under key in this Batched request.
func cachedCode(ctx context.Context, key []byte) (*codeRead, bool) {
	u, ok := unitFrom(ctx)
	if !ok || u.code == nil || !bytes.Equal(u.code.key, key) {
		return nil, false
	}
	return u.code, true
}

// cachedOIDC returns the OpenID Connect session under oidcKey if it was read
// with a code in this Batched request.
func cachedOIDC(ctx context.Context, oidcKey []byte) ([]byte, bool) {
	u, ok := unitFrom(ctx)
	if !ok || u.code == nil || u.code.oidc == nil || !bytes.Equal(u.code.oidcKey, oidcKey) {
		return nil, false
	}
	return u.code.oidc, true
}

// deleteOIDCWithCode deletes, with the code under key being invalidated, the
// OpenID Connect session read with it in this Batched request. fosite reads
// that session next (from the read) and then deletes it; deleting it in the
// commit that invalidates the code saves the round trip the delete would
// cost after it.
func (s *Store) deleteOIDCWithCode(ctx context.Context, key []byte) error {
	c, ok := cachedCode(ctx, key)
	if !ok || c.oidc == nil || c.oidcDeleted {
		return nil
	}
	if err := s.del(ctx, oidcSessions, c.oidcKey); err != nil {
		return fmt.Errorf("store: invalidate authorize code: %w", err)
	}
	c.oidcDeleted = true
	return nil
}

// oidcDeletedWithCode reports whether the OpenID Connect session under
// oidcKey went with its code's invalidation in this Batched request.
func oidcDeletedWithCode(ctx context.Context, oidcKey []byte) bool {
	u, ok := unitFrom(ctx)
	return ok && u.code != nil && u.code.oidcDeleted && bytes.Equal(u.code.oidcKey, oidcKey)
}
