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

// Pipeline returns a context carrying a new pipelined unit of work
// (db.Pipeline) for one authorization or token request, and the unit, which
// the caller commits before it answers (the token endpoint whether fosite
// succeeded or not). fosite's writes wait in it and go out together, at
// fosite's Commit or at the caller's; codes and token rotations that must
// still be unused, and sessions that must still be live, are checked by
// statements that fail the unit when they do not hold, so a failed check
// rolls back the tokens sent with it.
//
// The request also remembers what it has read: a token exchange reads its
// code with the code's PKCE and OpenID Connect sessions in one statement,
// and fosite's later reads of them (it reads the code twice) are answered
// from that read. And a code's sessions, created right after the code, go
// into the code's still-waiting INSERT instead of an UPDATE of their own.
//
// An authorization with a session then costs one round trip for its
// writes, a code exchange two (the read, and the commit), a refresh two.
func (s *Store) Pipeline(ctx context.Context) (context.Context, *db.Unit) {
	ctx, u := db.Pipeline(ctx, s.Pool)
	return context.WithValue(ctx, requestKey{}, &request{}), u
}

type (
	requestKey struct{}
	txKey      struct{} // inside fosite's BeginTX: see tx
)

// request is what one Pipeline request has read, and the code it is
// issuing.
type request struct {
	code    *codeRead
	issuing *pendingCode
}

func requestFrom(ctx context.Context) (*request, bool) {
	r, ok := ctx.Value(requestKey{}).(*request)
	return r, ok
}

// tx is fosite's transaction (BeginTX) within the unit of work: the unit,
// and how many statements waited in it before, which a Rollback keeps.
type tx struct {
	unit  *db.Unit
	mark  int
	owned bool // BeginTX made the unit: Commit commits it
}

// unit returns the unit of work in ctx that a write joins. Every write
// belongs to one: the request's (Pipeline), or the one fosite's BeginTX
// made. A write outside any is a bug in the caller and fails.
func unit(ctx context.Context, op string) (*db.Unit, error) {
	u, ok := db.From(ctx)
	if !ok {
		return nil, fmt.Errorf("store: %s: not in a unit of work (Store.Pipeline or BeginTX)", op)
	}
	return u, nil
}

// pendingCode is a code whose INSERT waits in the request's unit.
type pendingCode struct {
	key  []byte // HashSignature of the code's signature
	req  fosite.Requester
	stmt *db.Queued
	// pkce and oidc are the INSERT's form arguments, read when the unit is
	// sent, so a form attached after the code was queued goes with it.
	pkce, oidc *lateJSON
}

// lateJSON is a jsonb argument that may be set after its statement was
// queued: pgx reads it (driver.Valuer) when the unit sends the batch. NULL
// until set.
type lateJSON struct{ doc []byte }

func (j *lateJSON) Value() (driver.Value, error) {
	if j.doc == nil {
		return nil, nil
	}
	return string(j.doc), nil
}

// attachForm puts r's form into the INSERT, still waiting, of the code
// being issued under key, in the column late names, when r is a copy of
// that code's request (fosite's PKCE and OpenID Connect sessions are);
// false means the caller writes the form into the code's row itself.
func attachForm(ctx context.Context, u *db.Unit, key []byte, r fosite.Requester, late func(*pendingCode) *lateJSON) (bool, error) {
	req, ok := requestFrom(ctx)
	if !ok || req.issuing == nil || !bytes.Equal(req.issuing.key, key) ||
		!u.Waits(req.issuing.stmt) || !sameGrant(req.issuing.req, r) {
		return false, nil
	}
	doc, err := json.Marshal(storedForm(r))
	if err != nil {
		return false, fmt.Errorf("marshal form: %w", err)
	}
	late(req.issuing).doc = doc
	return true, nil
}

// codeSignature is the signature part of an authorization code in fosite's
// HMAC format ("[prefix]key.signature"), which the code's row is stored
// under. fosite keys a code's OpenID Connect session by the whole code; this
// finds the code's row from it.
func codeSignature(code string) string {
	return code[strings.LastIndexByte(code, '.')+1:]
}

// codeRead is an authorization code read with its sessions' forms.
type codeRead struct {
	key    []byte // HashSignature of the code's signature
	req    *fosite.Request
	active bool
	// pkceForm and oidcForm are the sessions' forms; nil when there is
	// none (or it was deleted).
	pkceForm, oidcForm []byte
	// oidcCleared: the OpenID Connect session's form went with the code's
	// invalidation in this request.
	oidcCleared bool
	// pkceClear is the deletion of the PKCE session's form queued in this
	// request, which the code's invalidation absorbs when it follows.
	pkceClear *db.Queued
}

// cachedCode returns the code read under key in this request.
func cachedCode(ctx context.Context, key []byte) (*codeRead, bool) {
	r, ok := requestFrom(ctx)
	if !ok || r.code == nil || !bytes.Equal(r.code.key, key) {
		return nil, false
	}
	return r.code, true
}
