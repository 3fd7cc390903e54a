package keys_test

import (
	"bytes"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/idp/idp/internal/sso/keys/libcrypto"
)

const (
	serverSecret = "test-server-secret-0123456789abcdef"
	otherSecret  = "another-server-secret-0123456789abcdef"
)

func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

func box(t *testing.T, secret string) *secrets.Box {
	t.Helper()
	b, err := secrets.New(secret, "signing-keys")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t *testing.T, pool *pgxpool.Pool, secret string, c *clocktest.Clock) *keys.Set {
	t.Helper()
	s, err := keys.Load(context.Background(), pool, box(t, secret), c.Now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func countRows(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM signing_keys WHERE `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func mustSigner(t *testing.T, s *keys.Set, alg string) (string, crypto.Signer) {
	t.Helper()
	kid, key, err := s.Signer(alg)
	if err != nil {
		t.Fatalf("Signer(%s): %v", alg, err)
	}
	return kid, key
}

func TestLoad(t *testing.T) {
	ctx := context.Background()

	t.Run("first load generates an RS256 and an ES256 key", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		s := load(t, d.Pool, serverSecret, newClock())
		if n := countRows(t, d.Pool, "true"); n != 2 {
			t.Fatalf("signing_keys rows = %d, want 2", n)
		}
		_, rk := mustSigner(t, s, keys.RS256)
		rsaKey, ok := rk.Public().(*rsa.PublicKey)
		if !ok || rsaKey.N.BitLen() != 2048 {
			t.Errorf("RS256 signer's public key is %T, want a 2048-bit *rsa.PublicKey", rk.Public())
		}
		// RS256 signs through package libcrypto (OpenSSL in the build make
		// makes), not with the parsed key directly.
		probe, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		if want, err := libcrypto.NewRSASigner(probe); err != nil || fmt.Sprintf("%T", rk) != fmt.Sprintf("%T", want) {
			t.Errorf("RS256 signer is %T, want libcrypto's %T (%v)", rk, want, err)
		}
		_, ek := mustSigner(t, s, keys.ES256)
		ecKey, ok := ek.(*ecdsa.PrivateKey)
		if !ok || ecKey.Curve != elliptic.P256() {
			t.Errorf("ES256 signer is %T, want a P-256 *ecdsa.PrivateKey", ek)
		}
		jwks := s.JWKS()
		if len(jwks.Keys) != 2 {
			t.Fatalf("JWKS has %d keys, want 2", len(jwks.Keys))
		}
		for _, k := range jwks.Keys {
			if k.Use != "sig" || (k.Algorithm != keys.RS256 && k.Algorithm != keys.ES256) || !k.IsPublic() {
				t.Errorf("JWKS key %s: use %q alg %q public %v", k.KeyID, k.Use, k.Algorithm, k.IsPublic())
			}
			thumb, err := k.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if want := base64.RawURLEncoding.EncodeToString(thumb); k.KeyID != want {
				t.Errorf("kid %q, want the RFC 7638 thumbprint %q", k.KeyID, want)
			}
		}
	})

	t.Run("second load reuses the keys", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		first := load(t, d.Pool, serverSecret, newClock())
		second := load(t, d.Pool, serverSecret, newClock())
		if n := countRows(t, d.Pool, "true"); n != 2 {
			t.Fatalf("signing_keys rows = %d, want 2", n)
		}
		for _, alg := range keys.Algorithms() {
			k1, _ := mustSigner(t, first, alg)
			k2, _ := mustSigner(t, second, alg)
			if k1 != k2 {
				t.Errorf("%s: second Load signs with %s, first with %s", alg, k2, k1)
			}
		}
	})

	t.Run("concurrent loads on a fresh database generate once", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		c := newClock()
		sets := make([]*keys.Set, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range sets {
			wg.Go(func() {
				sets[i], errs[i] = keys.Load(ctx, d.Pool, box(t, serverSecret), c.Now)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Load %d: %v", i, err)
			}
		}
		if n := countRows(t, d.Pool, "true"); n != 2 {
			t.Fatalf("signing_keys rows = %d, want 2", n)
		}
		want := strings.Join(kids(sets[0].JWKS()), ",")
		for i, s := range sets[1:] {
			if got := strings.Join(kids(s.JWKS()), ","); got != want {
				t.Errorf("Load %d publishes %s, Load 0 %s", i+1, got, want)
			}
		}
	})

	t.Run("private part is sealed at rest", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		s := load(t, d.Pool, serverSecret, newClock())
		for _, alg := range keys.Algorithms() {
			kid, key := mustSigner(t, s, alg)
			var sealed, publicJWK []byte
			err := d.Pool.QueryRow(ctx, `SELECT private_encrypted, public_jwk FROM signing_keys WHERE kid = $1`, kid).
				Scan(&sealed, &publicJWK)
			if err != nil {
				t.Fatal(err)
			}
			der, err := box(t, serverSecret).Open(sealed, []byte(kid))
			if err != nil {
				t.Fatalf("%s: sealed value does not open under aad=kid: %v", alg, err)
			}
			if bytes.Contains(sealed, der) {
				t.Errorf("%s: private_encrypted contains the plain DER", alg)
			}
			opened, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				t.Fatalf("%s: sealed value is not a PKCS #8 key: %v", alg, err)
			}
			if !opened.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Errorf("%s: the sealed key is not the signer's", alg)
			}
			var jwk jose.JSONWebKey
			if err := json.Unmarshal(publicJWK, &jwk); err != nil {
				t.Fatalf("%s: public_jwk: %v", alg, err)
			}
			if !jwk.IsPublic() || jwk.KeyID != kid || jwk.Algorithm != alg {
				t.Errorf("%s: public_jwk kid %q alg %q public %v", alg, jwk.KeyID, jwk.Algorithm, jwk.IsPublic())
			}
		}
	})

	t.Run("wrong server secret", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		load(t, d.Pool, serverSecret, newClock())
		_, err := keys.Load(ctx, d.Pool, box(t, otherSecret), newClock().Now)
		if !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("Load with another secret: %v, want secrets.ErrDecrypt", err)
		}
		if !strings.Contains(err.Error(), "server secret") {
			t.Errorf("error %q does not point at the server secret", err)
		}
		if n := countRows(t, d.Pool, "true"); n != 2 {
			t.Errorf("signing_keys rows = %d, want 2 (nothing generated)", n)
		}
	})
}

func TestSet_Signer(t *testing.T) {
	d := dbtest.New(t)
	s := load(t, d.Pool, serverSecret, newClock())
	for _, alg := range []string{"HS256", "none", ""} {
		t.Run("unsupported "+alg, func(t *testing.T) {
			if _, _, err := s.Signer(alg); !errors.Is(err, keys.ErrUnsupportedAlg) {
				t.Errorf("Signer(%q): %v, want ErrUnsupportedAlg", alg, err)
			}
		})
	}
	t.Run("public key matches the signer", func(t *testing.T) {
		for _, alg := range keys.Algorithms() {
			kid, key := mustSigner(t, s, alg)
			pub, ok := s.PublicKey(kid)
			if !ok {
				t.Fatalf("PublicKey(%s) not found", kid)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Errorf("%s: PublicKey differs from Signer's public half", alg)
			}
		}
		if _, ok := s.PublicKey("no-such-kid"); ok {
			t.Error("PublicKey of an unknown kid found")
		}
	})
}

func TestSet_Rotate(t *testing.T) {
	ctx := context.Background()
	const ahead = 10 * time.Minute

	t.Run("published now, signs after publishAhead", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		c := newClock()
		s := load(t, d.Pool, serverSecret, c)
		old, _ := mustSigner(t, s, keys.RS256)
		oldES, _ := mustSigner(t, s, keys.ES256)
		other := load(t, d.Pool, serverSecret, c) // another instance

		kid, err := s.Rotate(ctx, keys.RS256, ahead)
		if err != nil {
			t.Fatal(err)
		}
		if kid == old {
			t.Fatal("Rotate returned the old kid")
		}
		if got := kids(s.JWKS()); len(got) != 3 || !contains(got, kid) {
			t.Fatalf("JWKS after Rotate = %v, want 3 keys including %s", got, kid)
		}
		if _, ok := s.PublicKey(kid); !ok {
			t.Error("PublicKey(new kid) not found before it signs")
		}

		c.Advance(ahead - time.Second)
		if got, _ := mustSigner(t, s, keys.RS256); got != old {
			t.Errorf("before publishAhead Signer = %s, want the old %s", got, old)
		}
		c.Advance(time.Second)
		if got, _ := mustSigner(t, s, keys.RS256); got != kid {
			t.Errorf("at publishAhead Signer = %s, want the new %s", got, kid)
		}
		if got, _ := mustSigner(t, s, keys.ES256); got != oldES {
			t.Errorf("ES256 Signer = %s, want the untouched %s", got, oldES)
		}

		if contains(kids(other.JWKS()), kid) {
			t.Fatal("other instance publishes the new key before Reload")
		}
		if err := other.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := mustSigner(t, other, keys.RS256); got != kid {
			t.Errorf("other instance after Reload signs with %s, want %s", got, kid)
		}
	})

	t.Run("unsupported alg", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		s := load(t, d.Pool, serverSecret, newClock())
		if _, err := s.Rotate(ctx, "HS256", ahead); !errors.Is(err, keys.ErrUnsupportedAlg) {
			t.Errorf("Rotate(HS256): %v, want ErrUnsupportedAlg", err)
		}
		if n := countRows(t, d.Pool, "true"); n != 2 {
			t.Errorf("signing_keys rows = %d, want 2", n)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestSet_Retire(t *testing.T) {
	ctx := context.Background()
	const (
		ahead    = 10 * time.Minute
		lifetime = time.Hour // the longest token lifetime
	)

	tests := []struct {
		name string
		// since is how long after the new key started signing Retire runs.
		since       time.Duration
		wantRetired int
	}{
		{"superseded for less than the token lifetime", lifetime - time.Second, 0},
		{"superseded for exactly the token lifetime", lifetime, 1},
		{"superseded for longer", 2 * lifetime, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := dbtest.New(t)
			c := newClock()
			s := load(t, d.Pool, serverSecret, c)
			old, _ := mustSigner(t, s, keys.RS256)
			es, _ := mustSigner(t, s, keys.ES256)
			kid, err := s.Rotate(ctx, keys.RS256, ahead)
			if err != nil {
				t.Fatal(err)
			}
			c.Advance(ahead + tt.since)

			n, err := s.Retire(ctx, lifetime)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.wantRetired {
				t.Fatalf("Retire = %d, want %d", n, tt.wantRetired)
			}
			_, published := s.PublicKey(old)
			if published == (tt.wantRetired == 1) {
				t.Errorf("old key published = %v after retiring %d", published, n)
			}
			if got := countRows(t, d.Pool, "retired_at IS NOT NULL"); got != tt.wantRetired {
				t.Errorf("rows with retired_at = %d, want %d", got, tt.wantRetired)
			}
			for _, k := range []string{kid, es} {
				if _, ok := s.PublicKey(k); !ok {
					t.Errorf("current key %s no longer published", k)
				}
			}
			if got, _ := mustSigner(t, s, keys.RS256); got != kid {
				t.Errorf("Signer = %s, want %s", got, kid)
			}
		})
	}

	t.Run("a key rotated ahead does not supersede before it signs", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		c := newClock()
		s := load(t, d.Pool, serverSecret, c)
		old, _ := mustSigner(t, s, keys.RS256)
		if _, err := s.Rotate(ctx, keys.RS256, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		c.Advance(2 * lifetime)
		if n, err := s.Retire(ctx, 0); err != nil || n != 0 {
			t.Fatalf("Retire = %d, %v; want 0 while the new key is not yet signing", n, err)
		}
		if got, _ := mustSigner(t, s, keys.RS256); got != old {
			t.Errorf("Signer = %s, want the old %s", got, old)
		}
	})

	t.Run("another instance drops the key on Reload", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		c := newClock()
		s := load(t, d.Pool, serverSecret, c)
		other := load(t, d.Pool, serverSecret, c)
		old, _ := mustSigner(t, s, keys.RS256)
		c.Advance(time.Second)
		if _, err := s.Rotate(ctx, keys.RS256, 0); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Second)
		if n, err := s.Retire(ctx, 0); err != nil || n != 1 {
			t.Fatalf("Retire = %d, %v; want 1", n, err)
		}
		if err := other.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := other.PublicKey(old); ok {
			t.Error("other instance still publishes the retired key after Reload")
		}
	})
}
