package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signer is a private_key_jwt client's side: an ES256 key pair, the
// public half registered, assertions signed with the private one.
type signer struct {
	id   string
	jwks []byte
	sig  jose.Signer
}

func newSigner(id string) (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench-1", Use: "sig", Algorithm: "ES256"}}})
	if err != nil {
		return nil, err
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench-1"))
	if err != nil {
		return nil, err
	}
	return &signer{id: id, jwks: jwks, sig: sig}, nil
}

// assertion is a fresh client assertion for aud, good for a minute.
func (s *signer) assertion(aud string) (string, error) {
	b := make([]byte, 16)
	rand.Read(b)
	now := time.Now()
	raw, err := jwt.Signed(s.sig).Claims(jwt.Claims{Issuer: s.id, Subject: s.id, Audience: jwt.Audience{aud},
		ID: hex.EncodeToString(b), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
	if err != nil {
		return "", fmt.Errorf("bench: sign an assertion: %w", err)
	}
	return raw, nil
}
