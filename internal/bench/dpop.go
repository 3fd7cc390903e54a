package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// dpopClientCredentials asks for a DPoP-bound token as the resource
// server: each request carries a fresh proof (RFC 9449) signed with ES256
// by one key per worker (of workers), made by the load generator as a
// client would.
func (r *runner) dpopClientCredentials(workers int) (op, error) {
	tokenURL := r.in.issuer + "/oauth2/token"
	signers := make([]jose.Signer, workers)
	for i := range signers {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		signers[i], err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, worker int) error {
		jti := make([]byte, 16)
		rand.Read(jti)
		proof, err := jwt.Signed(signers[worker%len(signers)]).Claims(map[string]any{
			"jti": hex.EncodeToString(jti), "htm": "POST", "htu": tokenURL, "iat": time.Now().Unix()}).Serialize()
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL,
			strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		req.SetBasicAuth(url.QueryEscape(r.resource.id), url.QueryEscape(r.resource.secret))
		resp, err := r.hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		var t tokenResponse
		if err := json.Unmarshal(body, &t); err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST /oauth2/token with DPoP: HTTP %d", resp.StatusCode)
		}
		if t.AccessToken == "" || t.TokenType != "DPoP" {
			return errors.New("dpop_client_credentials: no DPoP access token in the answer")
		}
		return nil
	}, nil
}
