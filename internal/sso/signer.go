package sso

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/cryptosigner"
	"github.com/ory/fosite/token/jwt"

	"github.com/idp/idp/internal/sso/keys"
)

// keySigner is the jwt.Signer fosite signs ID tokens with. fosite uses one
// signer for all clients; the authorization endpoint records the client's
// algorithm in the ID token header ("alg" hint via a kid of that algorithm),
// and keySigner signs with the current key of that algorithm and stamps its
// kid. Verification (id_token_hint) picks the key by the token's kid.
type keySigner struct {
	Keys *keys.Set
}

var _ jwt.Signer = (*keySigner)(nil)

// headerAlg is the header entry the authorization endpoint sets to choose
// the algorithm; keySigner replaces it with the real kid.
const headerAlg = "idp_alg"

func (s *keySigner) Generate(_ context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	h := header.ToMap()
	alg, _ := h[headerAlg].(string)
	if alg == "" {
		alg = "RS256"
	}
	kid, key, err := s.Keys.Signer(alg)
	if err != nil {
		return "", "", err
	}
	// What fosite's jwt.DefaultSigner does, less its key-type switch, which
	// takes only concrete keys (its opaque-signer case compares the public
	// key with private key types and never matches).
	token := jwt.NewWithClaims(jose.SignatureAlgorithm(alg), claims)
	for k, v := range h {
		if k != headerAlg && k != "alg" {
			token.Header[k] = v
		}
	}
	token.Header["kid"] = kid
	raw, err := token.SignedString(cryptosigner.Opaque(key))
	if err != nil {
		return "", "", err
	}
	return raw, raw[strings.LastIndexByte(raw, '.')+1:], nil
}

func (s *keySigner) verificationKey(t *jwt.Token) (interface{}, error) {
	kid, _ := t.Header["kid"].(string)
	pub, ok := s.Keys.PublicKey(kid)
	if !ok {
		return nil, fmt.Errorf("sso: unknown kid %q", kid)
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if string(t.Method) != "RS256" {
			return nil, errors.New("sso: algorithm does not match key")
		}
		return p, nil
	case *ecdsa.PublicKey:
		if string(t.Method) != "ES256" {
			return nil, errors.New("sso: algorithm does not match key")
		}
		return p, nil
	}
	return nil, errors.New("sso: unsupported key")
}

func (s *keySigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s *keySigner) Decode(_ context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, s.verificationKey)
}

func (s *keySigner) Hash(ctx context.Context, in []byte) ([]byte, error) {
	return (&jwt.DefaultSigner{}).Hash(ctx, in)
}

func (s *keySigner) GetSignature(ctx context.Context, token string) (string, error) {
	return (&jwt.DefaultSigner{}).GetSignature(ctx, token)
}

func (s *keySigner) GetSigningMethodLength(context.Context) int {
	return jwt.SHA256HashSize
}
