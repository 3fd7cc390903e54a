// Package store is fosite's storage on PostgreSQL: authorization codes
// (with their PKCE and OpenID Connect sessions as forms in the code's row),
// access and refresh tokens, and the client assertion JTIs seen, one table
// per kind (migrations/0001_core.sql, 0009, 0010).
//
// Tokens are keyed by the SHA-256 of their signature, so a database dump
// holds nothing a client could present. Who a token belongs to (request id,
// client, subject, SSO session id) and when it expires are columns, so other
// packages revoke and clean up with plain SQL; the fosite request itself,
// minus any secret in its form, is a JSON document.
//
// Every write joins the unit of work in its context (db.Unit): the
// request's (Store.Pipeline), which the endpoint commits, or one fosite's
// BeginTX makes; reads run at once. Issuing tokens for a session-bound
// grant checks the SSO session in the same unit, under its share lock
// (sessions.LiveSQL), so no token outlives the session it belongs to.
//
// Round trips per fosite call, in a request's pipeline (the client lookup
// goes to Clients, which the caller caches):
//
//	Create*Session, Invalidate, Rotate, Revoke*, Delete*   none: queued
//	GetAuthorizeCodeSession                       1 SELECT (the code with its sessions' forms), once per request
//	GetPKCERequestSession, GetOpenIDConnectSession  none after the code's read; 1 otherwise
//	GetAccessTokenSession, GetRefreshTokenSession  1 SELECT by primary key
//	ClientAssertionJWTValid, SetClientAssertionJWT 1 each, at once
//	Commit                                        1: everything queued
//
// Issuing a code costs 1 round trip (with the app's client session), its
// exchange 2, a refresh 2 (TestStore_Fosite counts them).
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/storage"

	"github.com/idp/idp/internal/db"
)

// ErrNoTransaction is returned by Commit and Rollback when the context
// carries no transaction, i.e. BeginTX was not called on it.
var ErrNoTransaction = errors.New("store: no transaction in context")

// ClientGetter loads OAuth clients. It returns fosite.ErrNotFound for an
// unknown id.
type ClientGetter interface {
	GetClient(ctx context.Context, id string) (fosite.Client, error)
}

// Store implements fosite's storage interfaces on PostgreSQL.
type Store struct {
	Pool    *pgxpool.Pool
	Clients ClientGetter
	// Now is the clock SSO sessions' timeouts are checked against; nil
	// means time.Now.
	Now func() time.Time
}

// New returns a Store on pool that loads clients from clients.
func New(pool *pgxpool.Pool, clients ClientGetter) *Store {
	return &Store{Pool: pool, Clients: clients}
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var (
	_ fosite.ClientManager               = (*Store)(nil)
	_ oauth2.CoreStorage                 = (*Store)(nil)
	_ oauth2.TokenRevocationStorage      = (*Store)(nil)
	_ pkce.PKCERequestStorage            = (*Store)(nil)
	_ openid.OpenIDConnectRequestStorage = (*Store)(nil)
	_ storage.Transactional              = (*Store)(nil)
)

// HashSignature is the key a token is stored under: the SHA-256 of its
// signature (or, for OpenID Connect sessions, of the authorization code).
// Other packages use it to find a token's row.
func HashSignature(sig string) []byte {
	h := sha256.Sum256([]byte(sig))
	return h[:]
}

// GetClient implements fosite.ClientManager.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.Clients.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("store: get client: %w", err)
	}
	return c, nil
}

// ClientAssertionJWTValid implements fosite.ClientManager: a JTI seen before
// and not yet expired is a replayed client assertion.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var known bool
	err := db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM oauth_client_assertion_jti WHERE jti = $1 AND expires_at > now())`,
		jti).Scan(&known)
	if err != nil {
		return dbErr("client assertion jti valid", err)
	}
	if known {
		return fmt.Errorf("store: client assertion jti valid: %w", fosite.ErrJTIKnown)
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager. Expired JTIs are
// purged in the same statement; they cannot be replayed because the
// assertion itself has expired. The jti being set is left out of the purge
// so an expired row for it is overwritten by the upsert instead (one
// statement may not touch a row twice).
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		WITH purged AS (
			DELETE FROM oauth_client_assertion_jti WHERE expires_at <= now() AND jti <> $1
		)
		INSERT INTO oauth_client_assertion_jti (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
			WHERE oauth_client_assertion_jti.expires_at <= now()`,
		jti, exp)
	if err != nil {
		return dbErr("set client assertion jti", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set client assertion jti: %w", fosite.ErrJTIKnown)
	}
	return nil
}

// BeginTX implements storage.Transactional. fosite's transaction is a part
// of the unit of work in ctx: its writes wait there, and a Rollback drops
// those it queued. Without a unit in ctx it makes a pipeline of its own,
// which Commit commits.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if u, ok := db.From(ctx); ok {
		return context.WithValue(ctx, txKey{}, &tx{unit: u, mark: u.Mark()}), nil
	}
	ctx, u := db.Pipeline(ctx, s.Pool)
	return context.WithValue(ctx, txKey{}, &tx{unit: u, owned: true}), nil
}

// Commit implements storage.Transactional: it sends what waits in the
// unit, from before BeginTX too, in one round trip (a pipeline), or leaves
// it to the caller's commit (a transaction).
func (s *Store) Commit(ctx context.Context) error {
	t, ok := ctx.Value(txKey{}).(*tx)
	if !ok {
		return fmt.Errorf("store: commit: %w", ErrNoTransaction)
	}
	if !t.owned && !t.unit.Pipelined() {
		return nil
	}
	if err := t.unit.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Rollback implements storage.Transactional: the writes queued since
// BeginTX are dropped. fosite rolls back after a failed Commit too, when
// nothing waits any more; that is not an error.
func (s *Store) Rollback(ctx context.Context) error {
	t, ok := ctx.Value(txKey{}).(*tx)
	if !ok {
		return fmt.Errorf("store: rollback: %w", ErrNoTransaction)
	}
	t.unit.Discard(t.mark)
	return nil
}

// mapDBErr is dbErr for a statement that waits in a unit.
func mapDBErr(op string) func(error) error {
	return func(err error) error { return dbErr(op, err) }
}

// dbErr wraps a database error for op, translating what fosite acts on: no
// row is fosite.ErrNotFound, and a lost race (serialization failure or
// deadlock) is fosite.ErrSerializationFailure, which fosite reports as a
// retryable conflict.
func dbErr(op string, err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, fosite.ErrNotFound)
	case db.IsSerializationFailure(err):
		return fmt.Errorf("store: %s: %w: %w", op, fosite.ErrSerializationFailure, err)
	default:
		return fmt.Errorf("store: %s: %w", op, err)
	}
}

// TokenGrace is how long after expiry codes, tokens and client assertion
// JTIs are kept: an instance whose clock runs behind still finds a token
// it considers live, and a replayed code still meets its invalidated row
// (fosite then revokes the tokens it issued).
const TokenGrace = time.Hour

// Sweeps are the janitor's for this package's tables. A code's PKCE and
// OpenID Connect forms live in its row and go with it.
var Sweeps = []db.Sweep{
	{Table: "oauth_authorize_codes", Key: "signature_hash", Due: "expires_at < $1", Keep: TokenGrace},
	{Table: "oauth_access_tokens", Key: "signature_hash", Due: "expires_at < $1", Keep: TokenGrace},
	{Table: "oauth_refresh_tokens", Key: "signature_hash", Due: "expires_at < $1", Keep: TokenGrace},
	{Table: "oauth_client_assertion_jti", Key: "jti", Due: "expires_at < $1", Keep: TokenGrace},
}
