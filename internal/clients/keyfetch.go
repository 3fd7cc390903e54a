package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"golang.org/x/sync/singleflight"

	"github.com/idp/idp/internal/netguard"
)

// KeyFetcher fetches the key sets private_key_jwt clients publish at their
// jwks_uri (fosite.JWKSFetcherStrategy). Whoever registers a client
// chooses that URI, so the fetch follows the back-channel's rules
// (netguard: no address of this host, a private network or a link-local
// one unless AllowPrivate, checked on the address dialled), is bounded in
// time and size, and is cached: a client's keys change rarely, and a
// token request should not wait on the client's web server each time.
// A forced refresh (fosite asks for one when no key matches an
// assertion's kid), and a new attempt after a failed fetch, happen at most
// once per MinRefresh per URI, and concurrent requests share one fetch:
// anyone can send an assertion naming a client, and must not be able to
// make the provider fetch on every request.
type KeyFetcher struct {
	// AllowPrivate lets the URI resolve to this host, a private network
	// or a link-local address (IDP_ALLOW_PRIVATE_BACKCHANNEL).
	AllowPrivate bool
	// TTL of a fetched set (default 5 minutes), MinRefresh between forced
	// fetches of one URI (default 30 seconds), Timeout of a fetch (default
	// 5 seconds).
	TTL, MinRefresh, Timeout time.Duration
	Now                      func() time.Time

	once   sync.Once
	http   *http.Client
	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]fetchedKeys
}

// fetchedKeys is the last good fetch of a URI: the set it got and when;
// and the last failure, and when.
type fetchedKeys struct {
	set               *jose.JSONWebKeySet
	fetched, failedAt time.Time
	err               error
}

var _ fosite.JWKSFetcherStrategy = (*KeyFetcher)(nil)

func (f *KeyFetcher) init() {
	f.once.Do(func() {
		if f.TTL <= 0 {
			f.TTL = 5 * time.Minute
		}
		if f.MinRefresh <= 0 {
			f.MinRefresh = 30 * time.Second
		}
		if f.Timeout <= 0 {
			f.Timeout = 5 * time.Second
		}
		if f.Now == nil {
			f.Now = time.Now
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		if !f.AllowPrivate {
			// A proxy would dial for us, past the check.
			t.Proxy = nil
			t.DialContext = (&net.Dialer{Timeout: f.Timeout, Control: netguard.Control}).DialContext
		}
		f.http = &http.Client{Transport: t, Timeout: f.Timeout,
			// A redirect could lead anywhere; the client registered this URI.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		f.cache = map[string]fetchedKeys{}
	})
}

// Resolve implements fosite.JWKSFetcherStrategy.
func (f *KeyFetcher) Resolve(ctx context.Context, location string, ignoreCache bool) (*jose.JSONWebKeySet, error) {
	f.init()
	now := f.Now()
	f.mu.Lock()
	e := f.cache[location]
	f.mu.Unlock()
	fresh := e.set != nil && (now.Sub(e.fetched) < f.MinRefresh || (!ignoreCache && now.Sub(e.fetched) < f.TTL))
	switch {
	case fresh:
		return e.set, nil
	case e.err != nil && now.Sub(e.failedAt) < f.MinRefresh:
		// Too soon to try again. A set past its TTL is not served: the
		// client may have withdrawn a key from it.
		return nil, fetchError(e.err)
	}
	v, err, _ := f.flight.Do(location, func() (any, error) {
		// Not the request's context: the fetch is shared, and one caller
		// leaving must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.Timeout)
		defer cancel()
		set, err := f.fetch(ctx, location)
		f.mu.Lock()
		defer f.mu.Unlock()
		e := f.cache[location]
		if err != nil {
			e.err, e.failedAt = err, f.Now()
		} else {
			e = fetchedKeys{set: set, fetched: f.Now()}
		}
		f.cache[location] = e
		return set, err
	})
	if err != nil {
		return nil, fetchError(err)
	}
	return v.(*jose.JSONWebKeySet), nil
}

func fetchError(err error) error {
	return fosite.ErrInvalidClient.WithHint("The client's key set could not be fetched from its jwks_uri.").
		WithWrap(err).WithDebug(err.Error())
}

func (f *KeyFetcher) fetch(ctx context.Context, location string) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clients: fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clients: fetch jwks: %s answered %d", location, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("clients: fetch jwks: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("clients: fetch jwks: more than %d bytes", MaxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("clients: fetch jwks: not a JSON Web Key Set: %w", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxJWKSKeys {
		return nil, errors.New("clients: fetch jwks: the set must hold 1 to 20 keys")
	}
	// fosite takes only keys marked for signatures; a published set often
	// leaves use out. Private parts have no business here.
	keys := set.Keys[:0]
	for _, k := range set.Keys {
		if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		k.Use = "sig"
		keys = append(keys, k)
	}
	set.Keys = keys
	return &set, nil
}
