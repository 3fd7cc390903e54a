// Package store is fosite's storage on PostgreSQL: authorization codes, PKCE
// and OpenID Connect sessions, access and refresh tokens, and the client
// assertion JTIs seen, one table per kind (migrations/0001_core.sql), except
// that the sessions of a code issued in a Batched context are columns of the
// code's row (migrations/0009_code_forms.sql).
//
// Tokens are keyed by the SHA-256 of their signature, so a database dump
// holds nothing a client could present. Who a token belongs to (request id,
// client, subject, SSO session id) and when it expires are columns, so other
// packages revoke and clean up with plain SQL; the fosite request itself,
// minus any secret in its form, is a JSON document.
//
// Every method runs on the transaction carried in its context (db.Conn), so
// fosite's BeginTX/Commit/Rollback and our own db.InTx compose.
//
// Round trips per fosite call (the client lookup goes to Clients, which the
// caller caches):
//
//	CreateAuthorizeCodeSession, CreatePKCERequestSession,
//	CreateOpenIDConnectSession, CreateAccessTokenSession,
//	CreateRefreshTokenSession                      1 INSERT
//	GetAuthorizeCodeSession, GetPKCERequestSession,
//	GetOpenIDConnectSession, GetAccessTokenSession,
//	GetRefreshTokenSession                         1 SELECT by primary key + GetClient
//	InvalidateAuthorizeCodeSession                 1 (UPDATE, raising when the code is not active)
//	RotateRefreshToken                             1 (UPDATE refresh + DELETE its access token)
//	Delete*Session, RevokeRefreshToken,
//	RevokeAccessToken                              1
//	ClientAssertionJWTValid                        1
//	SetClientAssertionJWT                          1 (expired JTIs purged in the same statement)
//	BeginTX, Commit, Rollback                      1 each
//
// Called one by one, issuing a code costs 3 round trips, exchanging it 11
// and a refresh 6. The server calls fosite in a Batched context instead,
// where writes wait and go out together, a code's PKCE and OpenID Connect
// sessions are forms in the code's row, and a code is read once with them:
// issuing a code costs 1 round trip (with the app's client session) and 2
// row writes, exchanging it 2, a refresh 2 (TestStore_Fosite counts them).
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
}

// New returns a Store on pool that loads clients from clients.
func New(pool *pgxpool.Pool, clients ClientGetter) *Store {
	return &Store{Pool: pool, Clients: clients}
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

// BeginTX implements storage.Transactional. Inside a transaction already in
// ctx it opens a savepoint, so fosite's unit of work nests in ours. In a
// Batched context no transaction is opened: the writes fosite makes wait in
// the batch, which is atomic by itself, until Commit sends them.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if w, ok := db.WriteBehindFrom(ctx); ok {
		return context.WithValue(ctx, batchTxKey{}, w.Len()), nil
	}
	var (
		tx  pgx.Tx
		err error
	)
	if outer, ok := db.TxFrom(ctx); ok {
		tx, err = outer.Begin(ctx)
	} else {
		tx, err = s.Pool.Begin(ctx)
	}
	if err != nil {
		return ctx, dbErr("begin", err)
	}
	return db.WithTx(ctx, tx), nil
}

// Commit implements storage.Transactional. In a Batched context it sends
// everything waiting, from before BeginTX too, in one round trip.
func (s *Store) Commit(ctx context.Context) error {
	if w, ok := batchTx(ctx); ok {
		return w.Flush(ctx)
	}
	tx, ok := db.TxFrom(ctx)
	if !ok {
		return fmt.Errorf("store: commit: %w", ErrNoTransaction)
	}
	if err := tx.Commit(ctx); err != nil {
		return dbErr("commit", err)
	}
	return nil
}

// Rollback implements storage.Transactional. fosite rolls back after a
// failed Commit too, when pgx has already closed the transaction; that is
// not an error. The rollback runs even when the request's context is
// cancelled, so the connection goes back to the pool clean.
func (s *Store) Rollback(ctx context.Context) error {
	if w, ok := db.WriteBehindFrom(ctx); ok {
		if start, ok := ctx.Value(batchTxKey{}).(int); ok {
			w.Discard(start)
			return nil
		}
	}
	tx, ok := db.TxFrom(ctx)
	if !ok {
		return fmt.Errorf("store: rollback: %w", ErrNoTransaction)
	}
	if err := tx.Rollback(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return dbErr("rollback", err)
	}
	return nil
}

// mapDBErr is dbErr for a statement that may wait in a batch.
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
