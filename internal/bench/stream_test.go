package bench

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// TestSETReceiver: the revoke-all's stream receiver counts a SET only
// when it is the provider's (verified against its published keys) for
// this receiver, the session-revoked event of the revoke-all's user and
// revocation, and counts each jti once; everything else it refuses as
// RFC 8935 says and reports.
func TestSETReceiver(t *testing.T) {
	h := servertest.New(t)
	const userID = "7d2b3c1e-0000-4000-8000-000000000001"
	sets := &tally{expected: 2, done: make(chan struct{})}
	sr, err := startSETReceiver(h.Issuer, userID, sets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sr.close)

	now := time.Now()
	set := func(jti string, change func(*ssf.SET)) ssf.SET {
		s := ssf.SET{JTI: jti, IssuedAt: now.Unix(), Subject: ssf.IssSub(h.Issuer, userID),
			Events: ssf.SessionRevoked(now, ssf.InitiatorAdmin, "revoked by an administrator"), TxnID: "txn-1"}
		if change != nil {
			change(&s)
		}
		return s
	}
	sign := func(s ssf.SET, audience string) string {
		tok, err := s.Sign(h.Srv.Keys, ssf.SigningAlg, h.Issuer, audience)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// forged is a SET as the provider would sign it, by a key it never
	// published.
	forged := func() string {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "forged"}},
			(&jose.SignerOptions{}).WithType(ssf.TokenType))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(map[string]any{"iss": h.Issuer, "aud": streamClientID, "iat": now.Unix(), "jti": "forged",
			"sub_id": ssf.IssSub(h.Issuer, userID), "events": ssf.SessionRevoked(now, ssf.InitiatorAdmin, ""), "txn": "txn-1"})
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jws.CompactSerialize()
		return tok
	}

	for _, tc := range []struct {
		name   string
		token  string
		auth   string // default: the stream's
		status int
		err    string // the refusal's err
	}{
		{"the first SET", sign(set("a", nil), streamClientID), "", http.StatusAccepted, ""},
		{"its jti again", sign(set("a", nil), streamClientID), "", http.StatusAccepted, ""},
		{"without the stream's Authorization", sign(set("b", nil), streamClientID), "Bearer wrong", http.StatusUnauthorized, "authentication_failed"},
		{"for another receiver", sign(set("b", nil), "someone-else"), "", http.StatusBadRequest, "invalid_audience"},
		{"signed by a key the provider never published", forged(), "", http.StatusBadRequest, "invalid_key"},
		{"about another user", sign(set("b", func(s *ssf.SET) { s.Subject = ssf.IssSub(h.Issuer, "someone") }), streamClientID), "", http.StatusBadRequest, "invalid_request"},
		{"another event", sign(set("b", func(s *ssf.SET) {
			s.Events = ssf.CredentialChange(now, ssf.InitiatorAdmin, ssf.CredentialPassword, ssf.ChangeUpdate)
		}), streamClientID), "", http.StatusBadRequest, "invalid_request"},
		{"not by an administrator", sign(set("b", func(s *ssf.SET) { s.Events = ssf.SessionRevoked(now, ssf.InitiatorUser, "") }), streamClientID), "", http.StatusBadRequest, "invalid_request"},
		{"of another revocation", sign(set("b", func(s *ssf.SET) { s.TxnID = "txn-2" }), streamClientID), "", http.StatusBadRequest, "invalid_request"},
		{"not a JWT", "not-a-set", "", http.StatusBadRequest, "invalid_request"},
		{"the second SET", sign(set("b", nil), streamClientID), "", http.StatusAccepted, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, sr.url, strings.NewReader(tc.token))
			req.Header.Set("Content-Type", "application/secevent+jwt")
			req.Header.Set("Authorization", sr.auth)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.err != "" {
				var refusal struct {
					Err string `json:"err"`
				}
				if json.Unmarshal(body, &refusal) != nil || refusal.Err != tc.err {
					t.Errorf("answer %s, want err %q", body, tc.err)
				}
			}
		})
	}

	select {
	case <-sets.done:
	default:
		t.Fatalf("%d SETs counted, want 2", sets.arrived.Load())
	}
	var got SETs
	firstErr := sr.outcome(&got)
	if got.Received != 2 || got.Duplicates != 1 || got.Invalid != 8 {
		t.Errorf("received %d, duplicates %d, invalid %d; want 2, 1, 8", got.Received, got.Duplicates, got.Invalid)
	}
	if !strings.Contains(firstErr, "Authorization") {
		t.Errorf("first error %q, want the first refusal's (the Authorization)", firstErr)
	}
}
