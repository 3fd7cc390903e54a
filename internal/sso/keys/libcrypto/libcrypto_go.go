//go:build !(openssl && cgo)

package libcrypto

import (
	"crypto"
	"crypto/rsa"
)

// Enabled reports whether RSA signatures go through libcrypto: false in
// this build (without cgo or the openssl build tag).
func Enabled() bool { return false }

// Version names the library that signs RS256 tokens.
func Version() string { return "Go crypto/rsa" }

// NewRSASigner returns a signer of RS256 digests with key, by crypto/rsa
// in this build.
func NewRSASigner(key *rsa.PrivateKey) (crypto.Signer, error) {
	return goSigner{key}, nil
}
