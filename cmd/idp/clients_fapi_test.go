package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
)

// TestRun_ClientsFAPI: `idp clients create` registers a client that must
// push its authorization requests (--require-par) and private_key_jwt
// clients with their keys given (--jwks) or published (--jwks-uri); keys
// that cannot serve are refused with nothing written.
func TestRun_ClientsFAPI(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := clients.NewStore(d.Pool)
	store.TTL = -1
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	set := func(k any) string {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "k1"}}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	runCLI(t, d.URL, "", "clients", "create", "--id", "bank", "--redirect-uri", "https://bank.example.com/cb", "--require-par").
		check(t, 0, "client_secret")
	if c, err := store.Get(ctx, "bank"); err != nil || !c.RequirePAR {
		t.Fatalf("bank = %+v, %v: want require_pushed_authorization_requests", c, err)
	}

	runCLI(t, d.URL, "", "clients", "create", "--id", "signer", "--grant-type", "client_credentials",
		"--token-endpoint-auth-method", "private_key_jwt", "--jwks", set(&key.PublicKey)).check(t, 0, "private_key_jwt: there is no secret")
	c, err := store.Get(ctx, "signer")
	if err != nil {
		t.Fatal(err)
	}
	if c.SecretHash != nil || c.GetTokenEndpointAuthMethod() != "private_key_jwt" || c.GetTokenEndpointAuthSigningAlgorithm() != "RS256" ||
		c.GetJSONWebKeys() == nil || len(c.GetJSONWebKeys().Key("k1")) != 1 || c.GetJSONWebKeys().Key("k1")[0].Use != "sig" {
		t.Fatalf("signer = %+v: want private_key_jwt, RS256, no secret, key k1 for signatures", c)
	}

	runCLI(t, d.URL, "", "clients", "create", "--id", "published", "--grant-type", "client_credentials",
		"--token-endpoint-auth-method", "private_key_jwt", "--token-endpoint-auth-signing-alg", "ES256",
		"--jwks-uri", "https://published.example.com/jwks.json").check(t, 0, "private_key_jwt")
	if c, err := store.Get(ctx, "published"); err != nil || c.GetJSONWebKeysURI() != "https://published.example.com/jwks.json" {
		t.Fatalf("published = %+v, %v", c, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a private key", []string{"--jwks", set(key)}, "is a private key"},
		{"no keys", nil, "needs its public keys"},
		{"both", []string{"--jwks", set(&key.PublicKey), "--jwks-uri", "https://a.example.com/jwks"}, "not both"},
		{"a key unfit for the algorithm", []string{"--jwks", set(&key.PublicKey), "--token-endpoint-auth-signing-alg", "ES256"}, "no key can verify ES256"},
		{"HMAC", []string{"--jwks", set(&key.PublicKey), "--token-endpoint-auth-signing-alg", "HS256"}, "is not supported"},
		{"a private jwks_uri", []string{"--jwks-uri", "https://169.254.169.254/jwks"}, "private network"},
		{"an http jwks_uri", []string{"--jwks-uri", "http://keys.example.com/jwks"}, "must use https"},
		{"not JSON", []string{"--jwks", "{"}, "not a JSON Web Key Set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"clients", "create", "--id", "bad", "--grant-type", "client_credentials",
				"--token-endpoint-auth-method", "private_key_jwt"}, tc.args...)
			runCLI(t, d.URL, "", args...).check(t, 1, tc.want)
			if _, err := store.Get(ctx, "bad"); err == nil {
				t.Fatal("a refused client was stored")
			}
		})
	}
	runCLI(t, d.URL, "", "clients", "create", "--id", "bad", "--grant-type", "client_credentials", "--jwks", set(&key.PublicKey)).
		check(t, 1, "are for token_endpoint_auth_method private_key_jwt")
}
