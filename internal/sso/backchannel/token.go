// Package backchannel owns OpenID Connect Back-Channel Logout 1.0 (errata
// set 1) from the provider's side: the logout token and its delivery.
//
// Sessions end elsewhere (package sessions), which queues one logout_outbox
// row per relying party to tell and, in the same transaction, notifies
// NotifyChannel. A Worker on every instance claims due rows
// with FOR UPDATE SKIP LOCKED, signs a fresh logout token per attempt, POSTs
// it to the relying party's backchannel_logout_uri, and records the outcome
// on the row: delivered, retried with backoff, failed (the relying party
// refused it), or abandoned (still unreachable after GiveUpAfter). Retry lets
// an administrator send a failed or abandoned notification again.
package backchannel

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/idp/idp/internal/sso/keys"
)

// EventLogout is the member of the events claim that makes a JWT a logout
// token.
const EventLogout = "http://schemas.openid.net/event/backchannel-logout"

// TokenType is the JWT typ header of a logout token (spec §2.4), which keeps
// it from being mistaken for an ID token or any other JWT (§4.1).
const TokenType = "logout+jwt"

// TokenLifetime is exp−iat of a logout token: short, because it is delivered
// at once and each retry signs a new one.
const TokenLifetime = 2 * time.Minute

// ErrInvalidToken means SignLogoutToken was asked for a token the spec does
// not allow, such as one with neither sub nor sid.
var ErrInvalidToken = errors.New("backchannel: invalid logout token request")

type logoutClaims struct {
	Issuer   string              `json:"iss"`
	Subject  string              `json:"sub,omitempty"`
	Audience jwt.Audience        `json:"aud"`
	IssuedAt *jwt.NumericDate    `json:"iat"`
	Expiry   *jwt.NumericDate    `json:"exp"`
	ID       string              `json:"jti"`
	SID      string              `json:"sid,omitempty"`
	Events   map[string]struct{} `json:"events"`
}

// SignLogoutToken signs a logout token for clientID with the current key of
// alg (the client's id_token_signed_response_alg). The token carries iss,
// aud, iat, exp (iat+TokenLifetime), a random jti, sub when subject is set,
// sid when includeSID, and the back-channel logout event; never a nonce.
// It returns the token and its jti, which may be logged where the token must
// not be.
func SignLogoutToken(ks *keys.Set, alg, issuer, clientID, subject, sid string, includeSID bool, now time.Time) (token, jti string, err error) {
	switch {
	case issuer == "" || clientID == "":
		return "", "", fmt.Errorf("%w: issuer and client id are required", ErrInvalidToken)
	case includeSID && sid == "":
		return "", "", fmt.Errorf("%w: sid requested but empty", ErrInvalidToken)
	case subject == "" && !includeSID:
		return "", "", fmt.Errorf("%w: needs a sub or a sid", ErrInvalidToken)
	}
	kid, key, err := ks.Signer(alg)
	if err != nil {
		return "", "", fmt.Errorf("backchannel: sign: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: cryptosigner.Opaque(key), KeyID: kid}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return "", "", fmt.Errorf("backchannel: sign: %w", err)
	}
	iat := now.Truncate(time.Second)
	claims := logoutClaims{
		Issuer:   issuer,
		Subject:  subject,
		Audience: jwt.Audience{clientID},
		IssuedAt: jwt.NewNumericDate(iat),
		Expiry:   jwt.NewNumericDate(iat.Add(TokenLifetime)),
		ID:       rand.Text(),
		Events:   map[string]struct{}{EventLogout: {}},
	}
	if includeSID {
		claims.SID = sid
	}
	token, err = jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("backchannel: sign: %w", err)
	}
	return token, claims.ID, nil
}
