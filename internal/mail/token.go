package mail

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// NewLinkToken makes the secret a mailed link carries (32 random bytes,
// base64url) and the SHA-256 hash to store in its place: the database
// never holds a token that works.
func NewLinkToken() (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the stored form of a link token.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// TokenMatches compares a presented token with a stored hash in constant
// time.
func TokenMatches(token string, hash []byte) bool {
	return len(hash) == sha256.Size && subtle.ConstantTimeCompare(HashToken(token), hash) == 1
}

// PasswordFingerprint stands for an account's current password hash (the
// argon2id string, whose salt is new at every change; "" for an account
// without a password). A link records it when mailed and works only while
// it is unchanged, so a password change kills every earlier link. It is
// a hash of a hash: it says nothing the stored password hash does not.
func PasswordFingerprint(passwordHash string) []byte {
	sum := sha256.Sum256([]byte("idp password fingerprint\x00" + passwordHash))
	return sum[:]
}

// SameFingerprint compares two fingerprints in constant time.
func SameFingerprint(a, b []byte) bool {
	return len(a) == sha256.Size && subtle.ConstantTimeCompare(a, b) == 1
}
