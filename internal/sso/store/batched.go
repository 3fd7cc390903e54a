package store

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"strings"

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
//   - A code's PKCE and OpenID Connect sessions, copies of the code's
//     request with other forms, are stored as those forms in the code's
//     row (migrations/0009_code_forms.sql) rather than as rows of their
//     own: the code's INSERT, still waiting, takes them.
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

// unit is what one Batched request has read, and the code it is issuing.
type unit struct {
	code    *codeRead
	issuing *pendingCode
}

// pendingCode is a code whose INSERT waits in the request's WriteBehind.
type pendingCode struct {
	key []byte // HashSignature of the code's signature
	req fosite.Requester
	// stmt is the INSERT's place in the WriteBehind: a rollback that
	// discards it (WriteBehind.Len falls to stmt or below) leaves nothing
	// to attach a form to.
	stmt int
	// pkce and oidc are the INSERT's form arguments, read when the batch
	// is sent, so a form attached after the code was queued goes with it.
	pkce, oidc *lateJSON
}

// lateJSON is a jsonb argument that may be set after its statement was
// queued: pgx reads it (driver.Valuer) when the WriteBehind sends the
// batch. NULL until set.
type lateJSON struct{ doc []byte }

func (j *lateJSON) Value() (driver.Value, error) {
	if j.doc == nil {
		return nil, nil
	}
	return string(j.doc), nil
}

// issuingFor returns the code being issued in ctx under key, if its INSERT
// is still waiting and r is a copy of its request.
func issuingFor(ctx context.Context, key []byte, r fosite.Requester) (*pendingCode, bool) {
	u, ok := unitFrom(ctx)
	if !ok || u.issuing == nil || !bytes.Equal(u.issuing.key, key) {
		return nil, false
	}
	w, ok := db.WriteBehindFrom(ctx)
	if !ok || w.Len() <= u.issuing.stmt || !sameGrant(u.issuing.req, r) {
		return nil, false
	}
	return u.issuing, true
}

// attachForm stores r's form in the code being issued under key, into the
// column that late names, when r is a copy of that code's request; false
// means the caller stores r as a row of its own.
func attachForm(ctx context.Context, key []byte, r fosite.Requester, late func(*pendingCode) *lateJSON) (bool, error) {
	p, ok := issuingFor(ctx, key, r)
	if !ok {
		return false, nil
	}
	doc, err := json.Marshal(storedForm(r))
	if err != nil {
		return false, fmt.Errorf("marshal form: %w", err)
	}
	late(p).doc = doc
	return true, nil
}

// codeSignature is the signature part of an authorization code in fosite's
// HMAC format ("[prefix]key.signature"), which the code's row is stored
// under. fosite keys a code's OpenID Connect session by the whole code; this
// finds the code's row from it. A code of another format yields a key no
// row has, and its session is then stored and found as a row of its own.
func codeSignature(code string) string {
	return code[strings.LastIndexByte(code, '.')+1:]
}

// codeRead is an authorization code read with its PKCE and OpenID Connect
// sessions.
type codeRead struct {
	key    []byte // HashSignature of the code's signature
	req    *fosite.Request
	active bool
	// pkceForm and oidcForm are the sessions' forms stored in the code's
	// row; nil when the session is a row of its own, or there is none.
	pkceForm, oidcForm []byte
	pkce               []byte // the PKCE session's document; nil when there is none
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
		SELECT c.active, c.request, c.pkce_form, c.oidc_form, p.request, o.signature_hash, o.request
		FROM oauth_authorize_codes c
		LEFT JOIN oauth_pkce p ON p.signature_hash = c.signature_hash
		LEFT JOIN oauth_oidc o ON o.request_id = c.request_id
		WHERE c.signature_hash = $1`,
		key).Scan(&c.active, &doc, &c.pkceForm, &c.oidcForm, &c.pkce, &c.oidcKey, &c.oidc)
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

// cachedCodeOf returns the code read in this Batched request if code is it
// (fosite passes the whole code for its OpenID Connect session).
func cachedCodeOf(ctx context.Context, code string) (*codeRead, bool) {
	return cachedCode(ctx, HashSignature(codeSignature(code)))
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
