package mfa

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

const (
	// RecoveryCodeCount is how many recovery codes a set holds.
	RecoveryCodeCount = 10
	recoveryLen       = 10
)

// recoveryAlphabet is Crockford's base32 in lower case: 32 symbols, so each
// character carries 5 bits (10 characters = 50 bits) and a random byte maps
// onto it without bias. It leaves out i, l, o and u; parseCode reads i and l
// as 1 and o as 0, so a code copied by hand from paper still works.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// canonicalRecovery maps s (dashes and spaces already removed) to the form
// that is hashed, or reports that s is not a recovery code.
func canonicalRecovery(s string) (string, bool) {
	if len(s) != recoveryLen {
		return "", false
	}
	out := make([]byte, recoveryLen)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case 'o':
			c = '0'
		case 'i', 'l':
			c = '1'
		}
		if !validRecoveryChar(c) {
			return "", false
		}
		out[i] = c
	}
	return string(out), true
}

func validRecoveryChar(c byte) bool {
	for i := 0; i < len(recoveryAlphabet); i++ {
		if recoveryAlphabet[i] == c {
			return true
		}
	}
	return false
}

// newRecoveryCode returns a fresh code in canonical form.
func newRecoveryCode() string {
	b := make([]byte, recoveryLen)
	rand.Read(b) // never fails (crypto/rand panics instead)
	for i := range b {
		b[i] = recoveryAlphabet[b[i]&31]
	}
	return string(b)
}

// displayRecovery splits a canonical code in two halves, as it is shown.
func displayRecovery(c string) string {
	return c[:5] + "-" + c[5:]
}

// hashRecovery is what recovery_codes.code_hash stores. A plain SHA-256
// suffices and a slow password hash would not help enough to pay for it: a
// code carries 50 random bits, so guessing online is hopeless under the
// throttle, and offline an attacker with a database dump must search 2^50
// per code, per user (the user id in the input keeps one search from
// serving every account), for a code that is useless without that user's
// password. A deterministic hash (no per-code salt) also lets a code be
// found and spent by equality in one conditional UPDATE, which is what
// makes concurrent use of one code succeed exactly once.
func hashRecovery(userID, canonical string) []byte {
	h := sha256.New()
	h.Write([]byte("idp mfa recovery code v1\x00"))
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write([]byte(canonical))
	return h.Sum(nil)
}

// queueRecoveryCodes queues on u the writes that replace userID's codes
// with a fresh set, and returns the codes for display: this is the only
// time they exist in clear.
func (m *TOTP) queueRecoveryCodes(u *db.Unit, userID string) []string {
	u.Queue(`DELETE FROM recovery_codes WHERE user_id = $1`, userID)
	seen := make(map[string]bool, RecoveryCodeCount)
	codes := make([]string, 0, RecoveryCodeCount)
	hashes := make([][]byte, 0, RecoveryCodeCount)
	for len(codes) < RecoveryCodeCount {
		c := newRecoveryCode()
		if seen[c] { // (user_id, code_hash) is unique; a repeat is a 2^-50 event
			continue
		}
		seen[c] = true
		codes = append(codes, displayRecovery(c))
		hashes = append(hashes, hashRecovery(userID, c))
	}
	u.Queue(`
		INSERT INTO recovery_codes (user_id, code_hash, created_at)
		SELECT $1, h, $3 FROM unnest($2::bytea[]) AS h`,
		userID, hashes, m.now())
	return codes
}

// useRecoveryCode spends one code. The conditional UPDATE is the whole
// single-use rule: of two transactions spending one code, the second finds
// used_at set and matches no row.
func (m *TOTP) useRecoveryCode(ctx context.Context, q db.Querier, userID, canonical string) (verdict, err error) {
	tag, err := q.Exec(ctx, `
		UPDATE recovery_codes SET used_at = $3
		WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
		userID, hashRecovery(userID, canonical), m.now())
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 0 {
		return ErrInvalidCode, nil
	}
	return nil, nil
}

// RegenerateRecoveryCodes replaces the user's recovery codes with a new set
// and returns it for display; the old codes stop working in the same
// transaction. The caller asks for the password (or a code) first.
func (m *TOTP) RegenerateRecoveryCodes(ctx context.Context, userID string) ([]string, error) {
	uid, err := canonicalUserID("regenerate recovery codes", userID)
	if err != nil {
		return nil, err
	}
	var codes []string
	err = db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		// The credential row lock orders this after any verification in
		// flight, as for every other write to a user's second factor.
		var confirmed bool
		err := u.QueryRow(ctx,
			`SELECT confirmed_at IS NOT NULL FROM totp_credentials WHERE user_id = $1 FOR UPDATE`,
			uid).Scan(&confirmed)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !confirmed) {
			return ErrNotEnrolled
		}
		if err != nil {
			return err
		}
		codes = m.queueRecoveryCodes(u, uid) // sent with COMMIT
		return nil
	})
	if errors.Is(err, ErrNotEnrolled) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("mfa: regenerate recovery codes: %w", err)
	}
	return codes, nil
}

// RemainingRecoveryCodes counts the user's unused recovery codes (0 when
// 2FA is off).
func (m *TOTP) RemainingRecoveryCodes(ctx context.Context, userID string) (int, error) {
	uid, err := canonicalUserID("remaining recovery codes", userID)
	if err != nil {
		return 0, err
	}
	var n int
	err = db.Conn(ctx, m.Pool).QueryRow(ctx,
		`SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, uid).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mfa: remaining recovery codes: %w", err)
	}
	return n, nil
}
