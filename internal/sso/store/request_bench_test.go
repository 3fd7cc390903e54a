package store

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

type oneClient struct{}

func (oneClient) GetClient(context.Context, string) (fosite.Client, error) {
	return &fosite.DefaultClient{ID: "app"}, nil
}

// BenchmarkRequestDocument is the JSON work of one stored token: a request
// with the server's kind of session flattened into a row, then read back.
// A silent SSO does it about three times (31 µs a time with the session as
// a json.RawMessage, 22 with it encoded in the document's own pass, on the
// Zen 4 EPYC of docs/performance.md).
func BenchmarkRequestDocument(b *testing.B) {
	now := time.Now().UTC()
	sess := &openid.DefaultSession{Subject: "u", Username: "a@b", Headers: &jwt.Headers{Extra: map[string]any{"idp_alg": "RS256"}},
		Claims: &jwt.IDTokenClaims{Subject: "u", AuthTime: now, RequestedAt: now, AuthenticationMethodsReferences: []string{"pwd", "otp"},
			AuthenticationContextClassReference: "mfa", Extra: map[string]any{"sid": "6f1c2b0e-3d4a-4f5b-9c8d-7e6f5a4b3c2d", "email": "a@b"}},
		ExpiresAt: map[fosite.TokenType]time.Time{fosite.AuthorizeCode: now, fosite.AccessToken: now}}
	r := &fosite.Request{ID: "req", RequestedAt: now, Client: &fosite.DefaultClient{ID: "app"},
		RequestedScope: fosite.Arguments{"openid", "email"}, GrantedScope: fosite.Arguments{"openid", "email"},
		Form: url.Values{"redirect_uri": {"https://app.example/cb"}}, Session: sess}
	s := &Store{Clients: oneClient{}}
	for b.Loop() {
		rw, err := newRow(r, fosite.AccessToken, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.decode(context.Background(), rw.request, &openid.DefaultSession{}); err != nil {
			b.Fatal(err)
		}
	}
}
