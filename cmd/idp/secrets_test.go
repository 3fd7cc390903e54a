package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/idp/idp/internal/users"
)

// The server secret before rotation (A), after it (B), and one nobody
// configured (lost).
const (
	secretA    = "secrets-test-old-server-secret-0123456789"
	secretB    = "secrets-test-new-server-secret-0123456789"
	secretLost = "secrets-test-lost-server-secret-012345678"
)

// sealedUnderA gives a database holding, under secretA, a user enrolled in
// TOTP and three signing keys (the two generated at first start and one
// rotated in beside them), and the key set as an instance on A loaded it.
func sealedUnderA(t *testing.T) (*dbtest.DB, enrolled, *keys.Set) {
	t.Helper()
	ctx := context.Background()
	d := dbtest.New(t)
	ada := enrolledUser(t, d.Pool, totpUnder(d.Pool, mustBox(t, secretA, "totp")), "ada@example.com")
	set, err := keys.Load(ctx, d.Pool, mustBox(t, secretA, "signing-keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Rotate(ctx, keys.ES256, time.Hour); err != nil {
		t.Fatal(err)
	}
	return d, ada, set
}

func totpUnder(pool *pgxpool.Pool, box *secrets.Box) *mfa.TOTP {
	return &mfa.TOTP{Pool: pool, Box: box, Issuer: "idp"}
}

func TestRun_SecretsReencrypt(t *testing.T) {
	ctx := context.Background()
	d, ada, setA := sealedUnderA(t)
	rotating := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": secretB + "," + secretA}

	t.Run("needs the server secret", func(t *testing.T) {
		runEnv(t, map[string]string{"IDP_DATABASE_URL": d.URL}, "secrets", "reencrypt").check(t, 2, "IDP_SECRET is required")
	})
	t.Run("stray argument", func(t *testing.T) {
		runEnv(t, rotating, "secrets", "reencrypt", "now").check(t, 2, "unexpected argument")
	})
	t.Run("B alone cannot open the values yet", func(t *testing.T) {
		if _, err := keys.Load(ctx, d.Pool, mustBox(t, secretB, "signing-keys"), nil); !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("keys.Load under B before re-sealing: %v, want secrets.ErrDecrypt", err)
		}
	})
	t.Run("re-seals everything sealed under A", func(t *testing.T) {
		r := runEnv(t, rotating, "secrets", "reencrypt")
		r.check(t, 0, "re-sealed 1 TOTP secret and 3 signing keys under the first value of IDP_SECRET\n"+
			"no TOTP secret or signing key needs an older value of IDP_SECRET any more\n")
		if r.stderr != "" {
			t.Errorf("unexpected stderr: %s", r.stderr)
		}
	})
	t.Run("second run re-seals nothing", func(t *testing.T) {
		r := runEnv(t, rotating, "secrets", "reencrypt", "--json")
		r.check(t, 0, `"totp_secrets": 0`)
		var got reencryptResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if got.TOTPSecrets != 0 || got.SigningKeys != 0 || got.Unopened == nil || len(got.Unopened) != 0 {
			t.Errorf("second run = %+v, want 0, 0 and an empty unopened list", got)
		}
	})
	t.Run("A can leave the list", func(t *testing.T) {
		totpB := totpUnder(d.Pool, mustBox(t, secretB, "totp"))
		// Two steps past the confirming code, which is spent.
		totpB.Now = func() time.Time { return time.Now().Add(time.Minute) }
		if _, err := totpB.Verify(ctx, ada.id, mfa.GenerateCode(ada.secret, totpB.Now())); err != nil {
			t.Errorf("TOTP code under B alone: %v", err)
		}
		setB, err := keys.Load(ctx, d.Pool, mustBox(t, secretB, "signing-keys"), nil)
		if err != nil {
			t.Fatalf("keys.Load under B alone: %v", err)
		}
		if n := len(setB.JWKS().Keys); n != 3 {
			t.Errorf("JWKS under B has %d keys, want all 3", n)
		}
		for _, alg := range keys.Algorithms() {
			kid, key, err := setB.Signer(alg)
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := setA.PublicKey(kid)
			if !ok {
				t.Fatalf("%s: key %s was not published before re-sealing", alg, kid)
			}
			signAndVerify(t, alg, key, pub)
		}
	})
	t.Run("help lists the command", func(t *testing.T) {
		runEnv(t, nil, "help").check(t, 0, "secrets")
		runEnv(t, nil, "secrets", "help").check(t, 0, "reencrypt")
	})
}

func TestRun_SecretsReencryptUnopened(t *testing.T) {
	ctx := context.Background()
	d, ada, _ := sealedUnderA(t)
	rotating := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": secretB + "," + secretA}
	// carol's TOTP secret and one signing key are sealed under a secret
	// nobody configured; ada's and the other keys are under A and rotate.
	carol := enrolledUser(t, d.Pool, totpUnder(d.Pool, mustBox(t, secretLost, "totp")), "carol@example.com")
	var kid string
	if err := d.Pool.QueryRow(ctx, `SELECT kid FROM signing_keys WHERE alg = 'RS256'`).Scan(&kid); err != nil {
		t.Fatal(err)
	}
	lost := mustBox(t, secretLost, "signing-keys").Seal([]byte("unreadable"), []byte(kid))
	if _, err := d.Pool.Exec(ctx, `UPDATE signing_keys SET private_encrypted = $2 WHERE kid = $1`, kid, lost); err != nil {
		t.Fatal(err)
	}

	t.Run("fails naming each row, re-seals the others", func(t *testing.T) {
		r := runEnv(t, rotating, "secrets", "reencrypt")
		r.check(t, 1, "no value of IDP_SECRET opens 2 stored values")
		if want := "re-sealed 1 TOTP secret and 2 signing keys"; !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
		for _, want := range []string{"user " + carol.id, "signing key " + kid} {
			if !strings.Contains(r.message, want) {
				t.Errorf("error report does not name %q:\n%s", want, r.message)
			}
		}
		if strings.Contains(r.message, ada.id) {
			t.Errorf("error report names ada, whose secret was re-sealed:\n%s", r.message)
		}
		for _, s := range []string{secretA, secretB, secretLost} {
			if strings.Contains(r.message+r.stdout+r.stderr, s) {
				t.Fatal("the output shows a server secret")
			}
		}
	})
	t.Run("json lists them and still fails", func(t *testing.T) {
		r := runEnv(t, rotating, "secrets", "reencrypt", "--json")
		r.check(t, 1, "no value of IDP_SECRET opens 2 stored values")
		var got reencryptResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if len(got.Unopened) != 2 || !strings.Contains(got.Unopened[0], carol.id) || !strings.Contains(got.Unopened[1], kid) {
			t.Errorf("unopened = %q, want carol's secret, then key %s", got.Unopened, kid)
		}
	})
}

type enrolled struct{ id, secret string }

// enrolledUser creates a user with confirmed TOTP under m's box.
func enrolledUser(t *testing.T, pool *pgxpool.Pool, m *mfa.TOTP, email string) enrolled {
	t.Helper()
	ctx := context.Background()
	u, err := users.NewStore(pool).Create(ctx, users.NewUser{Email: email, Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Begin(ctx, u.ID, "test", email)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Confirm(ctx, u.ID, "test", mfa.GenerateCode(e.Secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	return enrolled{id: u.ID, secret: e.Secret}
}

func mustBox(t *testing.T, secret, purpose string) *secrets.Box {
	t.Helper()
	b, err := secrets.New(secret, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signAndVerify signs a JWS with key and verifies it with pub.
func signAndVerify(t *testing.T, alg string, key crypto.Signer, pub any) {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: cryptosigner.Opaque(key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte("payload"))
	if err != nil {
		t.Fatalf("%s: sign: %v", alg, err)
	}
	if _, err := jws.Verify(pub); err != nil {
		t.Errorf("%s: signature does not verify with the published key: %v", alg, err)
	}
}
