package store_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/sso/store"
)

// TestStore_PAR: a pushed authorization request comes back whole, once,
// to the client that pushed it, before it expires; of two concurrent
// reads exactly one gets it; the request_uri is stored only as a digest.
func TestStore_PAR(t *testing.T) {
	s := newStore(t)
	clock := clocktest.New(time.Now())
	s.Now = clock.Now
	ctx := t.Context()
	if _, err := s.Pool.Exec(ctx, `INSERT INTO oauth_clients (id) VALUES ($1), ('other')`, testClientID); err != nil {
		t.Fatal(err)
	}
	push := func(t *testing.T, uri string) *fosite.AuthorizeRequest {
		t.Helper()
		ar := &fosite.AuthorizeRequest{ResponseTypes: fosite.Arguments{"code"}, State: "state-1234567890",
			RedirectURI: &url.URL{Scheme: "https", Host: "app.example", Path: "/cb"}, Request: *newRequest("req-" + uri[len(uri)-1:])}
		ar.Session.SetExpiresAt(fosite.PushedAuthorizeRequestContext, clock.Now().Add(time.Minute))
		if err := s.unit(ctx, func(ctx context.Context) error { return s.CreatePARSession(ctx, uri, ar) }); err != nil {
			t.Fatal(err)
		}
		return ar
	}
	// fosite hands the store the authorization request in the context.
	as := func(clientID string) context.Context {
		r := &http.Request{Form: url.Values{"client_id": {clientID}}}
		return context.WithValue(ctx, fosite.RequestContextKey, r)
	}

	t.Run("round trip, once", func(t *testing.T) {
		want := push(t, "urn:ietf:params:oauth:request_uri:a")
		got, err := s.GetPARSession(as(testClientID), "urn:ietf:params:oauth:request_uri:a")
		if err != nil {
			t.Fatal(err)
		}
		wantRequest(t, got, &want.Request)
		if got.GetRedirectURI().String() != "https://app.example/cb" || got.GetState() != want.State ||
			!got.GetResponseTypes().ExactOne("code") {
			t.Fatalf("got redirect %v, state %q, response types %v", got.GetRedirectURI(), got.GetState(), got.GetResponseTypes())
		}
		_, err = s.GetPARSession(as(testClientID), "urn:ietf:params:oauth:request_uri:a")
		wantErr(t, err, fosite.ErrNotFound)
	})
	t.Run("another client finds nothing and consumes nothing", func(t *testing.T) {
		push(t, "urn:ietf:params:oauth:request_uri:b")
		_, err := s.GetPARSession(as("other"), "urn:ietf:params:oauth:request_uri:b")
		wantErr(t, err, fosite.ErrNotFound)
		if _, err := s.GetPARSession(as(testClientID), "urn:ietf:params:oauth:request_uri:b"); err != nil {
			t.Fatalf("the pushing client after another's attempt: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		push(t, "urn:ietf:params:oauth:request_uri:c")
		clock.Advance(61 * time.Second)
		_, err := s.GetPARSession(as(testClientID), "urn:ietf:params:oauth:request_uri:c")
		wantErr(t, err, fosite.ErrNotFound)
	})
	t.Run("concurrent reads: one wins", func(t *testing.T) {
		push(t, "urn:ietf:params:oauth:request_uri:d")
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { _, errs[i] = s.GetPARSession(as(testClientID), "urn:ietf:params:oauth:request_uri:d") })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, fosite.ErrNotFound):
				t.Errorf("read: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d reads got the request, want 1", won)
		}
	})
	t.Run("hashed at rest", func(t *testing.T) {
		push(t, "urn:ietf:params:oauth:request_uri:e")
		var n int
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_par_requests WHERE request_uri_hash = $1
			AND position('request_uri:e' in request::text) = 0`, store.HashSignature("urn:ietf:params:oauth:request_uri:e")).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatal("the request is not stored under the digest of its request_uri alone")
		}
	})
}
