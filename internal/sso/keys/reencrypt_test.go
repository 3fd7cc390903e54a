package keys_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
)

// rotatedSecret is the value an operator puts in front of serverSecret.
const rotatedSecret = "rotated-server-secret-0123456789abcdef"

// sealedRows reads every row's private part by kid.
func sealedRows(t *testing.T, pool *pgxpool.Pool) map[string][]byte {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT kid, private_encrypted FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	var kid string
	var sealed []byte
	_, err = pgx.ForEachRow(rows, []any{&kid, &sealed}, func() error {
		out[kid] = sealed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withRetired loads keys under serverSecret and rotates and retires one, so
// the table holds three keys, one of them retired.
func withRetired(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	c := newClock()
	s := load(t, pool, serverSecret, c)
	c.Advance(time.Second)
	if _, err := s.Rotate(ctx, keys.RS256, 0); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if n, err := s.Retire(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Retire = %d, %v; want 1", n, err)
	}
}

func TestReencryptAll(t *testing.T) {
	ctx := context.Background()
	both := box(t, rotatedSecret+","+serverSecret)

	t.Run("re-seals every key, retired ones too", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		withRetired(t, d.Pool)
		n, err := keys.ReencryptAll(ctx, d.Pool, both)
		if err != nil || n != 3 {
			t.Fatalf("ReencryptAll = %d, %v; want 3, nil", n, err)
		}
		onlyNew := box(t, rotatedSecret)
		for kid, sealed := range sealedRows(t, d.Pool) {
			if both.NeedsRotation(sealed) {
				t.Errorf("key %s is still sealed by the old secret", kid)
			}
			if _, err := onlyNew.Open(sealed, []byte(kid)); err != nil {
				t.Errorf("key %s does not open under the new secret alone: %v", kid, err)
			}
		}
		if n, err := keys.ReencryptAll(ctx, d.Pool, both); err != nil || n != 0 {
			t.Fatalf("second ReencryptAll = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("instances load and sign with the new secret alone", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		before := load(t, d.Pool, serverSecret, newClock())
		if _, err := keys.ReencryptAll(ctx, d.Pool, both); err != nil {
			t.Fatal(err)
		}
		after := load(t, d.Pool, rotatedSecret, newClock())
		for _, alg := range keys.Algorithms() {
			kid, key := mustSigner(t, after, alg)
			if want, _ := mustSigner(t, before, alg); kid != want {
				t.Errorf("%s: signs with %s after re-sealing, %s before", alg, kid, want)
			}
			// Signed with the re-sealed private part, verified with the
			// public key published before: the same key, still signing.
			jws, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: cryptosigner.Opaque(key)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			signed, err := jws.Sign([]byte("payload"))
			if err != nil {
				t.Fatalf("%s: sign: %v", alg, err)
			}
			if _, err := signed.Verify(mustPublic(t, before, kid)); err != nil {
				t.Errorf("%s: a signature by the re-sealed key %s does not verify with its published key: %v", alg, kid, err)
			}
		}
	})

	t.Run("a row no key opens is reported, the others re-sealed", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		load(t, d.Pool, serverSecret, newClock())
		var lost string
		if err := d.Pool.QueryRow(ctx, `SELECT kid FROM signing_keys WHERE alg = 'ES256'`).Scan(&lost); err != nil {
			t.Fatal(err)
		}
		unknown := box(t, otherSecret).Seal([]byte("not a key anyone can open"), []byte(lost))
		if _, err := d.Pool.Exec(ctx, `UPDATE signing_keys SET private_encrypted = $2 WHERE kid = $1`, lost, unknown); err != nil {
			t.Fatal(err)
		}
		n, err := keys.ReencryptAll(ctx, d.Pool, both)
		if n != 1 || !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), lost) {
			t.Fatalf("ReencryptAll = %d, %v; want 1 and an ErrDecrypt naming %s", n, err, lost)
		}
		if got := sealedRows(t, d.Pool)[lost]; string(got) != string(unknown) {
			t.Error("the row no key opens was changed")
		}
	})

	t.Run("concurrent runs re-seal each key once", func(t *testing.T) {
		t.Parallel()
		d := dbtest.New(t)
		withRetired(t, d.Pool)
		const runs = 4
		counts := make([]int, runs)
		errs := make([]error, runs)
		var wg sync.WaitGroup
		for i := range runs {
			wg.Go(func() { counts[i], errs[i] = keys.ReencryptAll(ctx, d.Pool, both) })
		}
		wg.Wait()
		total := 0
		for i := range runs {
			if errs[i] != nil {
				t.Fatalf("run %d: %v", i, errs[i])
			}
			total += counts[i]
		}
		if total != 3 {
			t.Errorf("runs re-sealed %v keys, %d in all; want 3 in all", counts, total)
		}
		onlyNew := box(t, rotatedSecret)
		for kid, sealed := range sealedRows(t, d.Pool) {
			if _, err := onlyNew.Open(sealed, []byte(kid)); err != nil {
				t.Errorf("key %s does not open under the new secret alone: %v", kid, err)
			}
		}
	})
}

func mustPublic(t *testing.T, s *keys.Set, kid string) any {
	t.Helper()
	pub, ok := s.PublicKey(kid)
	if !ok {
		t.Fatalf("key %s is not published", kid)
	}
	return pub
}
