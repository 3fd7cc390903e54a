package receiver_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/ssf/receiver"
)

// transmitter is a transmitter's configuration and JWKS, served over
// HTTP, that the test changes.
type transmitter struct {
	srv   *httptest.Server
	mu    sync.Mutex
	iss   string // the issuer its configuration names
	jwks  []byte
	fetch int
}

func newTransmitter(t *testing.T) *transmitter {
	tr := &transmitter{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"issuer": tr.iss, "jwks_uri": tr.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.fetch++
		w.Write(tr.jwks)
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/.well-known/ssf-configuration", http.StatusFound)
	})
	tr.srv = httptest.NewServer(mux)
	t.Cleanup(tr.srv.Close)
	tr.iss = tr.srv.URL
	return tr
}

func (tr *transmitter) publish(keys ...jose.JSONWebKey) {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	tr.mu.Lock()
	tr.jwks = b
	tr.mu.Unlock()
}

func rsaKey(t *testing.T, kid string) (*rsa.PrivateKey, jose.JSONWebKey) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}
}

func TestVerifier(t *testing.T) {
	tr := newTransmitter(t)
	k1, pub1 := rsaKey(t, "k1")
	k2, pub2 := rsaKey(t, "k2")
	tr.publish(pub1)
	now := time.Now()
	var clock sync.Mutex
	v := &receiver.Verifier{Issuer: "https://us.example.com", AllowPrivate: true,
		Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }}
	tx := receiver.Transmitter{ID: "tx_test", Issuer: tr.srv.URL, ConfigURL: tr.srv.URL + "/.well-known/ssf-configuration"}
	set := func(key *rsa.PrivateKey, kid string) string {
		return signer{t: t, kid: kid, key: key}.sign(ssf.TokenType, setClaims(tx.Issuer, v.Issuer, ann(), revoked()))
	}

	if _, err := v.Verify(t.Context(), tx, set(k1, "k1")); err != nil {
		t.Fatalf("a SET signed with the published key: %v", err)
	}
	// Rotated: a new kid is refetched, but not more than every 30 s.
	tr.publish(pub2)
	if _, err := v.Verify(t.Context(), tx, set(k2, "k2")); err == nil {
		t.Fatal("a key published 0 s ago was taken before the refetch interval")
	}
	clock.Lock()
	now = now.Add(31 * time.Second)
	clock.Unlock()
	if _, err := v.Verify(t.Context(), tx, set(k2, "k2")); err != nil {
		t.Fatalf("after the rotation and 31 s: %v", err)
	}
	if _, err := v.Verify(t.Context(), tx, set(k1, "k1")); err == nil {
		t.Fatal("a SET signed with the withdrawn key verified")
	} else if e, ok := receiver.IsRefusal(err); !ok || e.Code != "invalid_key" {
		t.Fatalf("withdrawn key: %v, want invalid_key", err)
	}

	// What is wrong with the transmitter, not the SET: no refusal (push
	// answers 503, poll acknowledges nothing), nothing cached.
	for _, c := range []struct {
		name  string
		setup func()
		tx    receiver.Transmitter
	}{
		{"configuration names another issuer", func() { tr.iss = "https://other.example.com" }, tx},
		{"JWKS too large", func() { tr.jwks = []byte(`{"keys":[` + strings.Repeat(" ", 300<<10) + `]}`) }, tx},
		{"configuration redirects", func() {}, receiver.Transmitter{ID: "tx_moved", Issuer: tx.Issuer, ConfigURL: tr.srv.URL + "/moved"}},
		{"configuration unreachable", func() {}, receiver.Transmitter{ID: "tx_gone", Issuer: tx.Issuer, ConfigURL: "http://127.0.0.1:1/"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr.mu.Lock()
			tr.iss = tx.Issuer
			c.setup()
			tr.mu.Unlock()
			fresh := &receiver.Verifier{Issuer: v.Issuer, AllowPrivate: true}
			_, err := fresh.Verify(t.Context(), c.tx, set(k2, "k2"))
			if err == nil {
				t.Fatal("verified")
			}
			if _, ok := receiver.IsRefusal(err); ok {
				t.Fatalf("%v: a refusal of the SET, want the transmitter's failure", err)
			}
		})
	}

	// Internal addresses are refused without IDP_ALLOW_PRIVATE_BACKCHANNEL.
	guarded := &receiver.Verifier{Issuer: v.Issuer}
	if _, err := guarded.Verify(t.Context(), tx, set(k2, "k2")); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("loopback transmitter without the allowance: %v, want refused", err)
	}
}
