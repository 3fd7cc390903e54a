package clients_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/netguard"
)

// TestKeyFetcher_Resolve: a client's published key set is fetched under
// the back-channel's address rules, bounded in time and size, cached, and
// fetched again (forced, or after a failure) at most once per MinRefresh.
func TestKeyFetcher_Resolve(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1"}}})
	var fetches atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(`{"keys":[` + strings.Repeat(" ", clients.MaxJWKSBytes) + `]}`))
		case "/slow":
			time.Sleep(500 * time.Millisecond)
			w.Write(set)
		default:
			w.WriteHeader(int(status.Load()))
			w.Write(set)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	t.Run("an address of this host is refused", func(t *testing.T) {
		f := &clients.KeyFetcher{}
		_, err := f.Resolve(ctx, srv.URL+"/jwks", false)
		if !errors.Is(err, fosite.ErrInvalidClient) || !errors.Is(err, netguard.ErrInternal) {
			t.Fatalf("err = %v, want invalid_client wrapping netguard's refusal", err)
		}
	})

	clock := clocktest.New(time.Now())
	f := &clients.KeyFetcher{AllowPrivate: true, Now: clock.Now, Timeout: 200 * time.Millisecond}
	got := func(t *testing.T, ignoreCache bool, wantFetches int32) {
		t.Helper()
		s, err := f.Resolve(ctx, srv.URL+"/jwks", ignoreCache)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Key("k1")) != 1 || s.Key("k1")[0].Use != "sig" {
			t.Fatalf("set = %+v, want k1 marked for signatures", s)
		}
		if n := fetches.Load(); n != wantFetches {
			t.Fatalf("%d fetches, want %d", n, wantFetches)
		}
	}
	t.Run("cached", func(t *testing.T) {
		got(t, false, 1)
		got(t, false, 1)
		got(t, true, 1) // forced, but too soon
		clock.Advance(31 * time.Second)
		got(t, true, 2) // forced
		got(t, false, 2)
		clock.Advance(5 * time.Minute)
		got(t, false, 3) // expired
	})
	t.Run("a failure is not retried at once, and a stale set not served", func(t *testing.T) {
		status.Store(http.StatusInternalServerError)
		clock.Advance(5 * time.Minute)
		for range 2 {
			if _, err := f.Resolve(ctx, srv.URL+"/jwks", false); !errors.Is(err, fosite.ErrInvalidClient) {
				t.Fatalf("err = %v, want invalid_client", err)
			}
		}
		if n := fetches.Load(); n != 4 {
			t.Fatalf("%d fetches, want 4: one attempt after the set expired", n)
		}
		status.Store(http.StatusOK)
		clock.Advance(31 * time.Second)
		got(t, false, 5)
	})
	t.Run("too large, too slow", func(t *testing.T) {
		for _, path := range []string{"/big", "/slow"} {
			if _, err := f.Resolve(ctx, srv.URL+path, false); !errors.Is(err, fosite.ErrInvalidClient) {
				t.Errorf("%s: err = %v, want invalid_client", path, err)
			}
		}
	})
}
