package receiver_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/ssf/receiver"
)

// FuzzReceiver_Push sends arbitrary SETs to the push endpoint: arbitrary
// claims signed with the transmitter's real key (mode 0), or arbitrary
// bytes (mode 1). No 5xx; a refusal is a 400 with err and description;
// and since the transmitter maps subjects by iss_sub only, which no input
// guesses, nobody's session ever ends. One provider serves every input,
// trusting itself as the transmitter.
func FuzzReceiver_Push(f *testing.F) {
	for _, seed := range []struct {
		mode   uint8
		claims string
	}{
		{0, `{"iss":"{iss}","aud":"{iss}","iat":{now},"jti":"a","sub_id":{"format":"email","email":"ann@example.com"},"events":{"` + ssf.EventSessionRevoked + `":{}}}`},
		{0, `{"iss":"{iss}","aud":["{iss}","x"],"iat":{now},"jti":"b","sub_id":{"format":"iss_sub","iss":"{iss}","sub":"00000000-0000-0000-0000-000000000000"},"events":{"` + receiver.EventDeviceComplianceChange + `":{"current_status":"not-compliant"}}}`},
		{0, `{"iss":"{iss}","aud":"{iss}","iat":1e400,"jti":"c","events":{}}`},
		{0, `{"iss":7,"aud":null,"iat":"x","jti":[],"sub_id":"s","events":[]}`},
		{0, `{"iss":"{iss}","aud":"{iss}","iat":{now},"jti":"d","sub_id":{"format":"opaque","id":"s"},"events":{"` + ssf.EventVerification + `":{"state":"x"}}}`},
		{0, `{"iss":"{iss}","aud":"{iss}","iat":{now},"jti":"e","sub_id":{"format":"opaque","id":"s"},"events":{"` + ssf.EventStreamUpdated + `":{"status":"paused","reason":"a\u0000b"}}}`},
		{0, `null`},
		{1, `eyJhbGciOiJub25lIn0.e30.`},
		{1, `a.b.c.d.e`},
		{1, strings.Repeat("A", 70000)},
	} {
		f.Add(seed.mode, seed.claims)
	}
	h := servertest.New(f)
	ann := h.CreateUser("ann@example.com", password)
	signIn(f, h.NewRP("app"), "ann@example.com")
	tx, header, err := h.Srv.Signals.Store.Add(h.Ctx, receiver.New{Issuer: h.Issuer, Subjects: []string{receiver.SubjectsIssSub}})
	if err != nil {
		f.Fatal(err)
	}
	kid, key, err := h.Srv.Keys.Signer("RS256")
	if err != nil {
		f.Fatal(err)
	}
	url := h.URL + receiver.PathReceive + tx.ID
	f.Fuzz(func(t *testing.T, mode uint8, claims string) {
		raw := claims
		if mode%2 == 0 {
			claims = strings.NewReplacer("{iss}", h.Issuer, "{now}", strconv.FormatInt(time.Now().Unix(), 10)).Replace(claims)
			var m map[string]any
			if json.Unmarshal([]byte(claims), &m) != nil {
				return
			}
			raw = signer{t: t, kid: kid, key: cryptosigner.Opaque(key)}.sign(ssf.TokenType, m)
		}
		req, _ := http.NewRequest("POST", url, strings.NewReader(raw))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusRequestEntityTooLarge: // reqlimit's bound on every body
		case http.StatusBadRequest:
			var e struct{ Err, Description string }
			if json.Unmarshal(body, &e) != nil || e.Err == "" || e.Description == "" {
				t.Fatalf("400 without err and description: %s", body)
			}
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM sso_sessions WHERE user_id = $1::uuid AND revoked_at IS NULL`, ann.ID); n != 1 {
			t.Fatalf("%d live sessions of ann, want 1: an input ended her session", n)
		}
	})
}
