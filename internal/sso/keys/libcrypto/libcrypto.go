// Package libcrypto signs RS256 tokens with OpenSSL's libcrypto when the
// binary is built with cgo and the openssl build tag, and with Go's
// crypto/rsa otherwise.
//
// The RSA signature is most of the CPU of every token response carrying an
// ID token, and of every back-channel logout token. Go's crypto/rsa is
// portable constant-time code; OpenSSL 3 multiplies with the CPU's vector
// units (AVX-512 IFMA, AVX2) and signs 2048-bit keys three to five times
// faster on current x86 servers (docs/performance.md). Both produce the
// same, deterministic PKCS #1 v1.5 signatures, so relying parties see no
// difference.
//
// A libcrypto signature is checked with crypto/rsa's verification before
// it is returned: a fault in a CRT signature would reveal the key, and a
// check costs a few percent of a signature.
package libcrypto

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
)

// ErrOptions means a signature was asked for with anything but PKCS #1
// v1.5 over a SHA-256 digest, the one form RS256 uses.
var ErrOptions = errors.New("libcrypto: only RSA PKCS #1 v1.5 signatures of SHA-256 digests are supported")

// checkOptions admits what RS256 signs: a SHA-256 digest, PKCS #1 v1.5
// padding (opts is not *rsa.PSSOptions).
func checkOptions(digest []byte, opts crypto.SignerOpts) error {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 {
		return ErrOptions
	}
	if len(digest) != crypto.SHA256.Size() {
		return fmt.Errorf("%w: digest is %d bytes", ErrOptions, len(digest))
	}
	return nil
}
