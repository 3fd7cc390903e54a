package users

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams are one of OWASP's argon2id configurations (Password
// Storage Cheat Sheet): 12 MiB, 3 passes, 1 lane. OWASP lists it with
// 19 MiB and 2 passes, and three others, as giving the same defence and
// differing only in the trade between memory and CPU. We take the one with
// less memory: a hash holds its memory for its whole run, a burst of
// sign-ins holds one per core, and with Go's garbage collector letting the
// heap grow to twice what is live, 19 MiB per core put a 2-core provider
// over 150 MB under sign-in load (docs/performance.md); 12 MiB keeps it
// near 100 MB, at about the same CPU per hash.
//
// New hashes use them; stored hashes keep the parameters they were made
// with and are upgraded at the next successful sign-in.
var DefaultParams = Params{Memory: 12288, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}

// Password policy, after OWASP ASVS 5.0 (V6.2): a new password must be
// long enough and not one of the most common passwords (6.2.4, the list in
// common-passwords.txt); there are no composition rules (6.2.5).
const (
	// MinPasswordRunes counts characters, not bytes, so a passphrase in any
	// script is judged by what the person typed.
	MinPasswordRunes = 8
	// MaxPasswordBytes bounds the work an unauthenticated request can cause:
	// every byte is normalised and fed to the hash, and a sign-in form must
	// not become a way to make the server hash megabytes. 256 bytes is far
	// more than any passphrase needs (ASVS asks to allow at least 64
	// characters).
	MaxPasswordBytes = 256
)

// hashSlots bounds how many argon2 computations run at once. Each one
// allocates Params.Memory (12 MiB); without a bound a burst of sign-ins
// would grow memory without limit, and more hashes than cores would only
// queue on the CPU anyway. The bound is process-wide because memory is.
var hashSlots = make(chan struct{}, runtime.NumCPU())

func acquire(ctx context.Context) error {
	// A request that has already ended does not hash, even with a slot free
	// (select would pick at random between two ready cases).
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release() { <-hashSlots }

// ErrMalformedHash reports a stored hash this package cannot read.
var ErrMalformedHash = errors.New("users: malformed password hash")

// PolicyError is a password refused by the policy. It is ErrWeakPassword
// (errors.Is), and Reason says why in words a person can act on, without
// repeating the password: errors end up in logs.
type PolicyError struct {
	Reason string // e.g. "must be at least 8 characters"
}

func (e *PolicyError) Error() string { return ErrWeakPassword.Error() + ": " + e.Reason }
func (e *PolicyError) Unwrap() error { return ErrWeakPassword }

// NewPassword is a password that passed the policy, hashed and ready for
// StorePassword.
type NewPassword struct{ hash string }

// ChoosePassword applies the policy a password being chosen must meet and
// hashes it: a *PolicyError, or a NewPassword. A caller that has more to
// check (the current password, say) chooses first, so a refused password
// costs nothing else, and the hashing happens before any transaction.
func (s *Store) ChoosePassword(ctx context.Context, password string) (NewPassword, error) {
	if err := s.checkNewPassword(ctx, password); err != nil {
		return NewPassword{}, err
	}
	hash, err := HashPassword(ctx, password)
	if err != nil {
		return NewPassword{}, err
	}
	return NewPassword{hash: hash}, nil
}

// checkNewPassword is the policy, and with s.Breached set it also asks the
// breached-password service. When the service cannot be asked the password
// is judged without it (and the failure logged): an outage of a third party
// must not stop people from choosing passwords, and the local list of
// common ones still applies.
func (s *Store) checkNewPassword(ctx context.Context, password string) error {
	if err := checkPolicy(password); err != nil {
		return err
	}
	if s.Breached == nil {
		return nil
	}
	n, err := s.Breached.Count(ctx, password)
	if err != nil {
		log := s.Logger
		if log == nil {
			log = slog.Default()
		}
		log.WarnContext(ctx, "password accepted without the breached-password check", "err", err)
		return nil
	}
	if n > 0 {
		return &PolicyError{"has appeared in a known data breach; choose another"}
	}
	return nil
}

// checkPolicy returns a *PolicyError, or nil. It judges a password being
// chosen, never one given at sign-in: a rule added later must not lock out
// the people whose passwords predate it.
func checkPolicy(password string) error {
	if len(password) > MaxPasswordBytes {
		return &PolicyError{fmt.Sprintf("must be at most %d bytes", MaxPasswordBytes)}
	}
	if !utf8.ValidString(password) {
		return &PolicyError{"must be valid UTF-8 text"}
	}
	normalized := normalize(password)
	if utf8.RuneCountInString(normalized) < MinPasswordRunes {
		return &PolicyError{fmt.Sprintf("must be at least %d characters", MinPasswordRunes)}
	}
	if isCommon(normalized) {
		return &PolicyError{"is one of the most common passwords; choose another"}
	}
	return nil
}

// normalize applies NFKC (NIST SP 800-63B §3.1.1.2) so the same password
// typed on two keyboards, composed or decomposed, hashes the same.
func normalize(password string) string { return norm.NFKC.String(password) }

// HashPassword returns the PHC-encoded argon2id hash of password with
// DefaultParams and a fresh salt:
// $argon2id$v=19$m=12288,t=3,p=1$<salt>$<key> (unpadded standard base64).
// It waits for a hashing slot, or for ctx to end.
func HashPassword(ctx context.Context, password string) (string, error) {
	return hashWith(ctx, DefaultParams, password)
}

func hashWith(ctx context.Context, p Params, password string) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("users: hash: %w", err)
	}
	if err := acquire(ctx); err != nil {
		return "", fmt.Errorf("users: hash: %w", err)
	}
	key := argon2.IDKey([]byte(normalize(password)), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	release()
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches encoded, a hash made by
// HashPassword with any parameters (they are read from encoded). The
// comparison is constant-time. An error means encoded is unreadable or ctx
// ended, never a mismatch.
func CheckPassword(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, err
	}
	if err := acquire(ctx); err != nil {
		return false, fmt.Errorf("users: check password: %w", err)
	}
	got := argon2.IDKey([]byte(normalize(password)), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	release()
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// needsRehash reports whether encoded was made with other than DefaultParams.
func needsRehash(encoded string) bool {
	p, salt, _, err := decode(encoded)
	if err != nil {
		return true
	}
	return p.Memory != DefaultParams.Memory || p.Time != DefaultParams.Time ||
		p.Threads != DefaultParams.Threads || p.KeyLen != DefaultParams.KeyLen ||
		uint32(len(salt)) != DefaultParams.SaltLen
}

// maxMemory refuses stored parameters that would allocate more than 1 GiB:
// a corrupt or hostile row must not take the process down.
const maxMemory = 1 << 20 // KiB

func decode(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrMalformedHash, parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("%w: parameters %q", ErrMalformedHash, parts[3])
	}
	if p.Memory == 0 || p.Memory > maxMemory || p.Time == 0 || p.Threads == 0 {
		return p, nil, nil, fmt.Errorf("%w: parameters out of range %q", ErrMalformedHash, parts[3])
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: salt", ErrMalformedHash)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("%w: key", ErrMalformedHash)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// dummyHash is checked against when an account does not exist, so a wrong
// email costs the same time as a wrong password and the two cannot be told
// apart. It is made once, lazily, with the current parameters.
var dummyHash = sync.OnceValue(func() string {
	h, err := hashWith(context.Background(), DefaultParams, "not a real password, never matches")
	if err != nil {
		panic(err) // only crypto/rand can fail here
	}
	return h
})
