// Package secrets encrypts small values at rest (signing keys, TOTP secrets)
// with AES-256-GCM under keys derived from the server's secret.
//
// The server secret may list several values separated by commas: the first
// encrypts, every one decrypts, so an operator rotates by prepending a new
// value and re-encrypting at leisure. Each ciphertext starts with a short id
// of the key that sealed it.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// ErrDecrypt means no configured key opens the ciphertext.
var ErrDecrypt = errors.New("secrets: cannot decrypt: wrong server secret or corrupted value")

const keyIDLen = 4

// Box seals and opens values for one purpose.
type Box struct {
	keys []key // first seals
}

type key struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// MinSecretLen is the shortest server secret accepted, in bytes.
const MinSecretLen = 32

// New derives a Box for purpose (e.g. "signing-keys") from the server secret.
func New(serverSecret, purpose string) (*Box, error) {
	var b Box
	for _, s := range strings.Split(serverSecret, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("secrets: each server secret must be at least %d characters", MinSecretLen)
		}
		raw, err := hkdf.Key(sha256.New, []byte(s), nil, "idp "+purpose, 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		var k key
		sum := sha256.Sum256(raw)
		copy(k.id[:], sum[:keyIDLen])
		k.aead = aead
		b.keys = append(b.keys, k)
	}
	if len(b.keys) == 0 {
		return nil, errors.New("secrets: no server secret configured (IDP_SECRET)")
	}
	return &b, nil
}

// Seal encrypts plaintext; aad binds it to its row (e.g. a user id) so a
// ciphertext copied to another row does not open.
func (b *Box) Seal(plaintext, aad []byte) []byte {
	k := b.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte{}, k.id[:]...)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad)
}

// Open decrypts a value sealed by any configured key.
func (b *Box) Open(ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < keyIDLen {
		return nil, ErrDecrypt
	}
	for _, k := range b.keys {
		if string(k.id[:]) != string(ciphertext[:keyIDLen]) {
			continue
		}
		rest := ciphertext[keyIDLen:]
		ns := k.aead.NonceSize()
		if len(rest) < ns {
			return nil, ErrDecrypt
		}
		pt, err := k.aead.Open(nil, rest[:ns], rest[ns:], aad)
		if err != nil {
			return nil, ErrDecrypt
		}
		return pt, nil
	}
	return nil, ErrDecrypt
}

// NeedsRotation reports whether ciphertext was sealed by a key other than
// the current one.
func (b *Box) NeedsRotation(ciphertext []byte) bool {
	return len(ciphertext) < keyIDLen || string(ciphertext[:keyIDLen]) != string(b.keys[0].id[:])
}
