// Package registration owns dynamic client registration (RFC 7591) and
// management (RFC 7592): the initial access tokens an operator makes, the
// registration endpoint that turns a JSON document of client metadata
// into a client of internal/clients (validated by the same rules as
// `idp clients create`), and the client configuration endpoint where the
// holder of a client's registration access token reads, replaces or
// deletes it.
//
// Registration is off unless the operator makes an initial access token
// or opens it to public native clients (Open). Every token is a bearer
// credential of 256 random bits kept only as its SHA-256; every
// registration, update and deletion is audited in its own transaction.
package registration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// ErrInvalidToken is an initial access token that is unknown, expired or
// used up, or a registration access token that is not the client's.
var ErrInvalidToken = errors.New("registration: invalid token")

// newToken returns 32 random bytes, base64url without padding.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// TokenID names a token in the audit log and the logs: the first 16 hex
// digits of its hash, never the token.
func TokenID(token string) string { return hex.EncodeToString(hash(token))[:16] }

// Tokens are the initial access tokens.
type Tokens struct {
	Pool *pgxpool.Pool
	Now  func() time.Time

	// Live's answer, kept for liveTTL: discovery asks on every request
	// and must answer from memory when the database is away.
	mu       sync.Mutex
	live     bool
	liveAt   time.Time // zero: not known
	checking bool
}

// liveTTL is how long Live trusts its last answer: a token made by the
// command line shows in this instance's discovery within it.
const liveTTL = 30 * time.Second

// InitialToken describes a token made by Issue.
type InitialToken struct {
	Token     string    `json:"initial_access_token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	// Uses is how many registrations it is good for; 0 for any number
	// until it expires.
	Uses int `json:"uses,omitempty"`
}

// Issue makes an initial access token that expires after ttl and is good
// for uses registrations (0: any number). The token is returned once;
// only its hash is kept. Inside the caller's transaction when ctx carries
// one.
func (t *Tokens) Issue(ctx context.Context, ttl time.Duration, uses int) (InitialToken, error) {
	if ttl <= 0 {
		return InitialToken{}, fmt.Errorf("registration: token lifetime must be positive, not %s", ttl)
	}
	if uses < 0 {
		return InitialToken{}, fmt.Errorf("registration: uses must be 0 (any number) or more, not %d", uses)
	}
	now := t.Now()
	tok := InitialToken{Token: newToken(), ExpiresAt: now.Add(ttl).Truncate(time.Microsecond), Uses: uses}
	tok.ID = TokenID(tok.Token)
	var left any // NULL: any number of uses
	if uses > 0 {
		left = uses
	}
	if _, err := db.Conn(ctx, t.Pool).Exec(ctx,
		`INSERT INTO registration_tokens (token_hash, created_at, expires_at, uses_left) VALUES ($1, $2, $3, $4)`,
		hash(tok.Token), now, tok.ExpiresAt, left); err != nil {
		return InitialToken{}, fmt.Errorf("registration: issue token: %w", err)
	}
	t.forget()
	return tok, nil
}

// spend uses up one registration of token, in the caller's transaction:
// a registration that is refused later rolls it back. Concurrent
// registrations with a token's last use wait on its row, and only one
// gets it. ErrInvalidToken when it is unknown, expired or used up.
func (t *Tokens) spend(ctx context.Context, token string) error {
	tag, err := db.Conn(ctx, t.Pool).Exec(ctx, `
		UPDATE registration_tokens SET uses_left = uses_left - 1
		WHERE token_hash = $1 AND expires_at > $2 AND (uses_left IS NULL OR uses_left > 0)`, hash(token), t.Now())
	if err != nil {
		return fmt.Errorf("registration: spend token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrInvalidToken
	}
	t.forget() // that may have been its last use
	return nil
}

// Sweeps are what the janitor deletes: initial access tokens a day after
// they expired (kept that long so an operator can still see why one was
// refused).
var Sweeps = []db.Sweep{
	{Table: "registration_tokens", Key: "token_hash", Due: "expires_at < $1", Keep: 24 * time.Hour, Rare: true},
}

// Live reports whether any initial access token can still register a
// client: discovery names the registration endpoint only then (or when
// registration is open). The answer is this instance's last one when it
// is under liveTTL old, or while another request asks the database
// (which gets half a second); a failed question keeps the last answer
// for liveTTL too.
func (t *Tokens) Live(ctx context.Context) (bool, error) {
	now := t.Now()
	t.mu.Lock()
	known := !t.liveAt.IsZero()
	if on := t.live; known && (now.Sub(t.liveAt) < liveTTL || t.checking) {
		t.mu.Unlock()
		return on, nil
	}
	t.checking = true
	t.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var live bool
	err := t.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM registration_tokens
		WHERE expires_at > $1 AND (uses_left IS NULL OR uses_left > 0))`, now).Scan(&live)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checking = false
	t.liveAt = now
	if err != nil {
		return t.live, fmt.Errorf("registration: live tokens: %w", err)
	}
	t.live = live
	return live, nil
}

// forget drops Live's answer: this instance has just made or spent a
// token.
func (t *Tokens) forget() {
	t.mu.Lock()
	t.liveAt = time.Time{}
	t.mu.Unlock()
}
