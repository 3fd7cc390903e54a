//go:build !(openssl && cgo)

package libcrypto

import (
	"crypto"
	"crypto/rsa"
	"io"
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

// goSigner is crypto/rsa's signer restricted to what RS256 uses, so the
// two builds accept and refuse the same requests.
type goSigner struct{ key *rsa.PrivateKey }

func (s goSigner) Public() crypto.PublicKey { return &s.key.PublicKey }

func (s goSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkOptions(digest, opts); err != nil {
		return nil, err
	}
	return rsa.SignPKCS1v15(rand, s.key, crypto.SHA256, digest)
}
