//go:build openssl && cgo

package libcrypto

import (
	"crypto"
	"crypto/sha256"
	"runtime"
	"testing"
	"time"
)

// A signer dropped (keys.Set reloading) frees its EVP_PKEY and the
// contexts it kept, once the collector finds it unreachable.
func TestSigner_FreedWhenCollected(t *testing.T) {
	before := keysFreed.Load()
	func() {
		s, err := NewRSASigner(testKey)
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("x"))
		if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for keysFreed.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the signer's libcrypto key was not freed after it became unreachable")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
