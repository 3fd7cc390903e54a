// Package keys owns the provider's signing keys: the RS256 and ES256 keys
// that sign ID tokens and back-channel logout tokens, and the JWKS that
// publishes their public halves.
//
// Keys live in the signing_keys table with their private part sealed by the
// server secret, so every instance signs with the same keys and a database
// dump alone does not leak them. A key is published (in the JWKS) from the
// moment it is created but signs only from its active_at, so relying parties
// that cache the JWKS learn a new key before they meet a token signed by it.
// A superseded key stays published until every token it signed has expired,
// then Retire removes it from the JWKS. After an operator puts a new value
// in front of the server secret, ReencryptAll re-seals the private parts
// under it, so the old value can leave the list.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys/libcrypto"
)

// Signing algorithms the provider offers.
const (
	RS256 = "RS256" // RSA 2048, PKCS #1 v1.5 with SHA-256
	ES256 = "ES256" // ECDSA P-256 with SHA-256
)

// Algorithms lists the supported signing algorithms, for discovery's
// id_token_signing_alg_values_supported.
func Algorithms() []string { return []string{RS256, ES256} }

var (
	// ErrNoKey means no key of the algorithm may sign now.
	ErrNoKey = errors.New("keys: no active signing key")
	// ErrUnsupportedAlg means the algorithm is not one of Algorithms.
	ErrUnsupportedAlg = errors.New("keys: unsupported signing algorithm")
)

// generateLock is the pg_advisory_xact_lock key that serialises key
// generation, so instances starting together against an empty table create
// one key per algorithm between them rather than one each.
const generateLock = 7262013

// rsaBits is the RSA modulus size; 2048 is what relying parties' libraries
// universally accept, and larger keys slow every token signature.
const rsaBits = 2048

// Set is the in-memory view of the non-retired signing keys. It is safe for
// concurrent use; Reload refreshes it from the database.
type Set struct {
	pool *pgxpool.Pool
	box  *secrets.Box
	now  func() time.Time

	mu sync.RWMutex
	// keys is sorted by alg, then newest first (active_at, created_at,
	// kid descending), so the first usable match is the signer.
	keys []*entry
}

type entry struct {
	kid       string
	alg       string
	signer    crypto.Signer // libcrypto's RS256 signer or *ecdsa.PrivateKey
	createdAt time.Time
	activeAt  time.Time
}

// newer reports whether a is the newer of two keys of one algorithm: later
// active_at, then later created_at, then larger kid, so the choice is total
// and every instance makes the same one.
func newer(a, b *entry) bool {
	if !a.activeAt.Equal(b.activeAt) {
		return a.activeAt.After(b.activeAt)
	}
	if !a.createdAt.Equal(b.createdAt) {
		return a.createdAt.After(b.createdAt)
	}
	return a.kid > b.kid
}

// Load reads the signing keys, first generating an RS256 and an ES256 key if
// either algorithm has no key that may sign now. box must be built from the
// server secret the keys were sealed with; otherwise Load fails with an
// error wrapping secrets.ErrDecrypt. now defaults to time.Now.
func Load(ctx context.Context, pool *pgxpool.Pool, box *secrets.Box, now func() time.Time) (*Set, error) {
	if now == nil {
		now = time.Now
	}
	s := &Set{pool: pool, box: box, now: now}
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensure generates the missing keys. The unlocked check keeps an ordinary
// start from taking the lock; the check under the lock is the one that
// counts.
func (s *Set) ensure(ctx context.Context) error {
	missing, err := s.missing(ctx, db.Conn(ctx, s.pool))
	if err != nil || len(missing) == 0 {
		return err
	}
	err = db.Tx(ctx, s.pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.pool)
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, generateLock); err != nil {
			return err
		}
		missing, err := s.missing(ctx, tx)
		if err != nil {
			return err
		}
		now := s.now()
		for _, alg := range missing {
			if _, err := s.insert(ctx, tx, alg, now, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keys: generate: %w", err)
	}
	return nil
}

// missing lists the algorithms with no key that may sign now.
func (s *Set) missing(ctx context.Context, q db.Querier) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT DISTINCT alg FROM signing_keys
		WHERE retired_at IS NULL AND active_at <= $1`, s.now())
	if err != nil {
		return nil, fmt.Errorf("keys: read: %w", err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("keys: read: %w", err)
	}
	var out []string
	for _, alg := range Algorithms() {
		if !slices.Contains(have, alg) {
			out = append(out, alg)
		}
	}
	return out, nil
}

// insert generates a key of alg and stores it, sealed, publishing it at
// createdAt and signing from activeAt.
func (s *Set) insert(ctx context.Context, q db.Querier, alg string, createdAt, activeAt time.Time) (string, error) {
	priv, err := generate(alg)
	if err != nil {
		return "", err
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("keys: thumbprint: %w", err)
	}
	// The RFC 7638 thumbprint names the key by its content, so the kid can
	// never point at two different keys.
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	jwk, err := json.Marshal(pub)
	if err != nil {
		return "", fmt.Errorf("keys: marshal jwk: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("keys: marshal private key: %w", err)
	}
	// The kid as associated data ties the ciphertext to its row: a private
	// part copied under another kid does not open.
	sealed := s.box.Seal(der, []byte(pub.KeyID))
	_, err = q.Exec(ctx, `
		INSERT INTO signing_keys (kid, alg, private_encrypted, public_jwk, created_at, active_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		pub.KeyID, alg, sealed, jwk, createdAt, activeAt)
	if err != nil {
		return "", fmt.Errorf("keys: store key: %w", err)
	}
	return pub.KeyID, nil
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case RS256:
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return nil, fmt.Errorf("keys: generate %s: %w", alg, err)
		}
		return k, nil
	case ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate %s: %w", alg, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("keys: generate %q: %w", alg, ErrUnsupportedAlg)
}

// Reload re-reads the non-retired keys, picking up keys another instance
// rotated in and dropping ones it retired. Keys already held are not
// decrypted again.
func (s *Set) Reload(ctx context.Context) error {
	rows, err := db.Conn(ctx, s.pool).Query(ctx, `
		SELECT kid, alg, private_encrypted, created_at, active_at
		FROM signing_keys WHERE retired_at IS NULL`)
	if err != nil {
		return fmt.Errorf("keys: reload: %w", err)
	}
	type row struct {
		Kid       string
		Alg       string
		Private   []byte
		CreatedAt time.Time
		ActiveAt  time.Time
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return fmt.Errorf("keys: reload: %w", err)
	}

	s.mu.RLock()
	held := make(map[string]*entry, len(s.keys))
	for _, e := range s.keys {
		held[e.kid] = e
	}
	s.mu.RUnlock()

	next := make([]*entry, 0, len(got))
	for _, r := range got {
		if !slices.Contains(Algorithms(), r.Alg) {
			// A key of an algorithm a newer release added: leave it to the
			// instances that understand it.
			continue
		}
		if e, ok := held[r.Kid]; ok && e.activeAt.Equal(r.ActiveAt) {
			next = append(next, e)
			continue
		}
		signer, err := s.open(r.Kid, r.Alg, r.Private)
		if err != nil {
			return err
		}
		next = append(next, &entry{kid: r.Kid, alg: r.Alg, signer: signer, createdAt: r.CreatedAt, activeAt: r.ActiveAt})
	}
	slices.SortFunc(next, func(a, b *entry) int {
		if a.alg != b.alg {
			if a.alg < b.alg {
				return -1
			}
			return 1
		}
		if newer(a, b) {
			return -1
		}
		if newer(b, a) {
			return 1
		}
		return 0
	})

	s.mu.Lock()
	s.keys = next
	s.mu.Unlock()
	return nil
}

// open decrypts and parses one private key and checks it is of its alg.
func (s *Set) open(kid, alg string, sealed []byte) (crypto.Signer, error) {
	der, err := s.box.Open(sealed, []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("keys: open private key %s (was the server secret changed?): %w", kid, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: parse private key %s: %w", kid, err)
	}
	switch k := parsed.(type) {
	case *rsa.PrivateKey:
		if alg == RS256 {
			signer, err := libcrypto.NewRSASigner(k)
			if err != nil {
				return nil, fmt.Errorf("keys: private key %s: %w", kid, err)
			}
			return signer, nil
		}
	case *ecdsa.PrivateKey:
		if alg == ES256 && k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("keys: private key %s is not an %s key", kid, alg)
}

// Signer returns the key that signs alg tokens now: the newest key of alg
// whose active_at has passed. An RS256 key signs through package
// libcrypto (OpenSSL when built with it), an ES256 key is the
// *ecdsa.PrivateKey; go-jose takes either through its
// cryptosigner.Opaque.
func (s *Set) Signer(alg string) (kid string, key crypto.Signer, err error) {
	if !slices.Contains(Algorithms(), alg) {
		return "", nil, fmt.Errorf("keys: signer %q: %w", alg, ErrUnsupportedAlg)
	}
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.keys {
		if e.alg == alg && !e.activeAt.After(now) {
			return e.kid, e.signer, nil
		}
	}
	return "", nil, fmt.Errorf("keys: signer %s: %w", alg, ErrNoKey)
}

// PublicKey returns the public key named kid, if it is published: any
// non-retired key, including one not yet signing.
func (s *Set) PublicKey(kid string) (crypto.PublicKey, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.keys {
		if e.kid == kid {
			return e.signer.Public(), true
		}
	}
	return nil, false
}

// JWKS returns every published public key, each with its kid, alg and use
// "sig". The result is the caller's to keep.
func (s *Set) JWKS() jose.JSONWebKeySet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(s.keys))}
	for _, e := range s.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       e.signer.Public(),
			KeyID:     e.kid,
			Algorithm: e.alg,
			Use:       "sig",
		})
	}
	return set
}

// Rotate creates a key of alg, published at once and signing from
// now+publishAhead. publishAhead should exceed how long relying parties
// cache the JWKS, plus how often other instances Reload, so no relying
// party meets a token signed by a key it has not yet fetched.
func (s *Set) Rotate(ctx context.Context, alg string, publishAhead time.Duration) (kid string, err error) {
	if publishAhead < 0 {
		return "", fmt.Errorf("keys: rotate: negative publishAhead %s", publishAhead)
	}
	now := s.now()
	kid, err = s.insert(ctx, db.Conn(ctx, s.pool), alg, now, now.Add(publishAhead))
	if err != nil {
		return "", fmt.Errorf("keys: rotate: %w", err)
	}
	if err := s.Reload(ctx); err != nil {
		return "", err
	}
	return kid, nil
}

// Retire stops publishing keys that a newer key of the same algorithm
// superseded (started signing in their place) more than olderThan ago.
// "Newer" is the order Signer uses (kid compared bytewise, as in Go).
// olderThan must be at least the longest lifetime of a token the keys sign,
// so every token a retired key signed has expired. The key that signs now is
// never retired. It returns how many keys it retired.
func (s *Set) Retire(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("keys: retire: negative olderThan %s", olderThan)
	}
	now := s.now()
	tag, err := db.Conn(ctx, s.pool).Exec(ctx, `
		UPDATE signing_keys k SET retired_at = $1
		WHERE k.retired_at IS NULL AND EXISTS (
			SELECT 1 FROM signing_keys n
			WHERE n.alg = k.alg
			  AND (n.active_at, n.created_at, n.kid COLLATE "C") > (k.active_at, k.created_at, k.kid COLLATE "C")
			  AND n.active_at <= $2)`,
		now, now.Add(-olderThan))
	if err != nil {
		return 0, fmt.Errorf("keys: retire: %w", err)
	}
	if err := s.Reload(ctx); err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// SecretPurpose is the purpose the box sealing private keys is derived
// for: secrets.New(serverSecret, SecretPurpose). Changing it makes every
// stored key unreadable.
const SecretPurpose = "signing-keys"

// ReencryptAll re-seals under box's current key every private key that an
// older key of box sealed, retired keys included (the table keeps them), and
// returns how many it re-sealed. It needs no Set: it never parses a key, so
// it also re-seals keys of algorithms this release does not know, and it
// generates nothing in an empty table.
//
// Each row is swapped only if it still holds the ciphertext read, so it is
// safe to run from several places at once and alongside running instances:
// they hold their keys decrypted and do not open them again, and one that
// starts later opens old and new ciphertexts alike as long as its server
// secret lists both values. A row no key of box opens is reported in the
// joined error, naming its kid, and does not stop the others.
func ReencryptAll(ctx context.Context, pool *pgxpool.Pool, box *secrets.Box) (int, error) {
	rows, err := db.Conn(ctx, pool).Query(ctx, `SELECT kid, private_encrypted FROM signing_keys ORDER BY kid`)
	if err != nil {
		return 0, fmt.Errorf("keys: reencrypt: %w", err)
	}
	type row struct {
		Kid    string
		Sealed []byte
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return 0, fmt.Errorf("keys: reencrypt: %w", err)
	}
	var n int
	var errs []error
	for _, r := range all {
		if !box.NeedsRotation(r.Sealed) {
			continue
		}
		der, err := box.Open(r.Sealed, []byte(r.Kid))
		if err != nil {
			errs = append(errs, fmt.Errorf("keys: reencrypt signing key %s: %w", r.Kid, err))
			continue
		}
		tag, err := db.Conn(ctx, pool).Exec(ctx,
			`UPDATE signing_keys SET private_encrypted = $3 WHERE kid = $1 AND private_encrypted = $2`,
			r.Kid, r.Sealed, box.Seal(der, []byte(r.Kid)))
		if err != nil {
			// Keep the rows already found unreadable: the caller reports them
			// along with what stopped the run.
			errs = append(errs, fmt.Errorf("keys: reencrypt signing key %s: %w", r.Kid, err))
			return n, errors.Join(errs...)
		}
		n += int(tag.RowsAffected())
	}
	return n, errors.Join(errs...)
}
