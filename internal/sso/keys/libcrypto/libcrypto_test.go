package libcrypto

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
)

// testKey is generated once: a 2048-bit key takes a good part of a second.
var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// The signature is byte for byte crypto/rsa's: PKCS #1 v1.5 is
// deterministic, so a relying party cannot tell which library signed.
func TestSign_MatchesCryptoRSA(t *testing.T) {
	s, err := NewRSASigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("signing with %s (libcrypto enabled: %v)", Version(), Enabled())
	for _, msg := range []string{"", "header.claims", string(bytes.Repeat([]byte("x"), 5000))} {
		digest := sha256.Sum256([]byte(msg))
		got, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, testKey, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("signature of %d bytes differs from crypto/rsa's", len(msg))
		}
		if err := rsa.VerifyPKCS1v15(s.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], got); err != nil {
			t.Fatalf("does not verify with the signer's public key: %v", err)
		}
	}
}

func TestSign_RefusesOtherForms(t *testing.T) {
	s, err := NewRSASigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	d256 := sha256.Sum256([]byte("x"))
	cases := map[string]struct {
		digest []byte
		opts   crypto.SignerOpts
	}{
		"PSS":                {d256[:], &rsa.PSSOptions{Hash: crypto.SHA256}},
		"SHA-384":            {make([]byte, 48), crypto.SHA384},
		"unhashed":           {[]byte("raw message"), crypto.Hash(0)},
		"short SHA-256":      {d256[:31], crypto.SHA256},
		"SHA-256 wrong size": {append(d256[:], 0), crypto.SHA256},
	}
	for name, c := range cases {
		if _, err := s.Sign(rand.Reader, c.digest, c.opts); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
}

// Signers on many goroutines share one key (keys.Set hands the same signer
// to every request).
func TestSign_Concurrent(t *testing.T) {
	s, err := NewRSASigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			digest := sha256.Sum256([]byte{byte(i)})
			var err error
			for range 20 {
				var sig []byte
				if sig, err = s.Sign(nil, digest[:], crypto.SHA256); err == nil {
					err = rsa.VerifyPKCS1v15(&testKey.PublicKey, crypto.SHA256, digest[:], sig)
				}
				if err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s, err := NewRSASigner(testKey)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s", Version())
	digest := sha256.Sum256([]byte("header.claims"))
	for b.Loop() {
		if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	digest := sha256.Sum256([]byte("header.claims"))
	sig, _ := rsa.SignPKCS1v15(nil, testKey, crypto.SHA256, digest[:])
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(&testKey.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// CI builds with OpenSSL (.ci/run sets IDP_TEST_REQUIRE_LIBCRYPTO), so a
// change that silently fell back to crypto/rsa there would fail here.
func TestEnabledWhereRequired(t *testing.T) {
	if os.Getenv("IDP_TEST_REQUIRE_LIBCRYPTO") == "" {
		t.Skip("IDP_TEST_REQUIRE_LIBCRYPTO is not set")
	}
	if !Enabled() {
		t.Fatalf("RS256 signs with %s; this run requires libcrypto (build with -tags openssl and cgo)", Version())
	}
}
