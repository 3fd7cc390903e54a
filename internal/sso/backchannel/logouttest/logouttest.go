// Package logouttest is the tests' one relying party of back-channel
// logout: an app's endpoint that verifies every logout token as
// Back-Channel Logout 1.0 §2.6 tells an app to, plus what this provider
// promises beyond it (typ logout+jwt, one signature by a key of the JWKS
// with that key's alg, a two-minute lifetime, a jti, no nonce), keeps the
// valid ones and the refusals, and answers as the test tells it.
package logouttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// EventLogout is the events member that makes a JWT a logout token.
const EventLogout = "http://schemas.openid.net/event/backchannel-logout"

// Claims are a verified logout token's.
type Claims struct {
	jwt.Claims
	SID string
	// All is every claim, as JSON decoded them.
	All      map[string]any
	Raw      string
	Alg, Kid string
}

// Config says what a receiver expects.
type Config struct {
	Issuer string
	// ClientID is the one audience expected; empty accepts any single one.
	ClientID string
	// Keys returns the provider's JWKS, with the key kid if it has one
	// (fetched over HTTP, as an app does, or the key set itself).
	Keys func(kid string) (jose.JSONWebKeySet, error)
	// Subject, when set, is the only sub accepted.
	Subject string
	// Now is the app's clock (time.Now when nil); Leeway the skew it
	// allows on iat and exp.
	Now    func() time.Time
	Leeway time.Duration
	// RequireSID: the app registered backchannel_logout_session_required,
	// so sub and sid must both be there.
	RequireSID bool
}

// JWKSFrom returns Keys that fetch issuer's published JWKS on every token.
func JWKSFrom(jwksURL string) func(kid string) (jose.JSONWebKeySet, error) {
	return func(string) (jose.JSONWebKeySet, error) {
		var set jose.JSONWebKeySet
		resp, err := http.Get(jwksURL)
		if err != nil {
			return set, err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			return set, fmt.Errorf("jwks: %w", err)
		}
		return set, nil
	}
}

// Verify checks raw as cfg's app would.
func Verify(cfg Config, raw string) (Claims, error) {
	now := time.Now()
	if cfg.Now != nil {
		now = cfg.Now()
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return Claims{}, fmt.Errorf("parse: %w", err)
	}
	if len(tok.Headers) != 1 {
		return Claims{}, fmt.Errorf("%d signatures", len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "logout+jwt" {
		return Claims{}, fmt.Errorf("typ header %v, want logout+jwt", typ)
	}
	jwks, err := cfg.Keys(h.KeyID)
	if err != nil {
		return Claims{}, err
	}
	matches := jwks.Key(h.KeyID)
	if h.KeyID == "" || len(matches) != 1 {
		return Claims{}, fmt.Errorf("kid %q: %d keys in the JWKS", h.KeyID, len(matches))
	}
	if matches[0].Algorithm != h.Algorithm {
		return Claims{}, fmt.Errorf("alg %s signed with a %s key", h.Algorithm, matches[0].Algorithm)
	}
	c := Claims{Raw: raw, Alg: h.Algorithm, Kid: h.KeyID}
	if err := tok.Claims(matches[0].Key, &c.Claims, &c.All); err != nil {
		return Claims{}, fmt.Errorf("signature: %w", err)
	}
	c.SID, _ = c.All["sid"].(string)
	want := jwt.Expected{Issuer: cfg.Issuer, Subject: cfg.Subject, Time: now}
	if cfg.ClientID != "" {
		want.AnyAudience = jwt.Audience{cfg.ClientID}
	}
	if err := c.Claims.ValidateWithLeeway(want, cfg.Leeway); err != nil {
		return Claims{}, fmt.Errorf("claims: %w", err)
	}
	switch {
	case len(c.Audience) != 1:
		return Claims{}, fmt.Errorf("aud %v, want one client", c.Audience)
	case c.IssuedAt == nil || c.Expiry == nil:
		return Claims{}, errors.New("no iat or exp")
	case c.Expiry.Time().Sub(c.IssuedAt.Time()) != 2*time.Minute:
		return Claims{}, fmt.Errorf("exp-iat = %s, want 2m", c.Expiry.Time().Sub(c.IssuedAt.Time()))
	case now.Sub(c.IssuedAt.Time()).Abs() > max(cfg.Leeway, 2*time.Second):
		return Claims{}, fmt.Errorf("iat %s, now %s", c.IssuedAt.Time(), now)
	case c.ID == "":
		return Claims{}, errors.New("no jti")
	case c.All["sub"] == nil && c.All["sid"] == nil:
		return Claims{}, errors.New("neither sub nor sid")
	case cfg.RequireSID && (c.Subject == "" || c.SID == ""):
		return Claims{}, errors.New("sub and sid are required here")
	}
	if _, ok := c.All["nonce"]; ok {
		return Claims{}, errors.New("a logout token must not carry a nonce")
	}
	if want := map[string]any{EventLogout: map[string]any{}}; !reflect.DeepEqual(c.All["events"], want) {
		return Claims{}, fmt.Errorf("events %v, want %v", c.All["events"], want)
	}
	return c, nil
}

// Receiver is an app's back-channel logout endpoint (its URL is the
// backchannel_logout_uri). It answers 200 to a valid token unless the test
// says otherwise, and 400 to an invalid one, which WaitFor reports.
type Receiver struct {
	*httptest.Server
	cfg Config

	mu       sync.Mutex
	hits     int
	raw      []string // every token posted, valid or not
	tokens   []Claims
	errs     []string
	failNext int  // answer 503 to this many requests first
	refuse   bool // answer 400 to valid tokens
	respond  func(n int, w http.ResponseWriter, c Claims)
}

// T is what a receiver needs of a test (*testing.T and *testing.B have
// it); the package does not import testing, so the benchmark's receivers
// verify with it too.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// New starts a receiver, closed when t ends.
func New(t T, cfg Config) *Receiver {
	r := &Receiver{cfg: cfg}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// Respond sets what answers request number n (from 1) once its token
// verified; the default answers 200.
func (r *Receiver) Respond(fn func(n int, w http.ResponseWriter, c Claims)) {
	r.mu.Lock()
	r.respond = fn
	r.mu.Unlock()
}

// FailNext makes the next n deliveries get a 503.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.failNext = n
	r.mu.Unlock()
}

// Refuse makes valid tokens get a 400 while on, as an app that does not
// recognise the session would answer.
func (r *Receiver) Refuse(on bool) {
	r.mu.Lock()
	r.refuse = on
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		r.fail(fmt.Sprintf("%s with Content-Type %q, want a form POST", req.Method, req.Header.Get("Content-Type")))
		http.Error(w, "want a form POST", http.StatusBadRequest)
		return
	}
	raw := req.PostFormValue("logout_token")
	r.mu.Lock()
	r.hits++
	n := r.hits
	r.raw = append(r.raw, raw)
	if r.failNext > 0 {
		r.failNext--
		r.mu.Unlock()
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	r.mu.Unlock()
	c, err := Verify(r.cfg, raw)
	if err != nil {
		r.fail(err.Error())
		http.Error(w, "invalid logout token", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	refuse, respond := r.refuse, r.respond
	if !refuse {
		r.tokens = append(r.tokens, c)
	}
	r.mu.Unlock()
	switch {
	case refuse:
		http.Error(w, "refused", http.StatusBadRequest)
	case respond != nil:
		respond(n, w, c)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (r *Receiver) fail(msg string) {
	r.mu.Lock()
	r.errs = append(r.errs, msg)
	r.mu.Unlock()
}

// Tokens returns the valid tokens accepted so far.
func (r *Receiver) Tokens() []Claims {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tokens)
}

// Raw returns every token posted so far, valid or not (to check that none
// reached a log).
func (r *Receiver) Raw() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.raw)
}

// Errors returns why the invalid posts so far were refused.
func (r *Receiver) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// WaitFor waits (bounded) until n valid tokens have been accepted, failing
// the test at once if an invalid one arrives, and returns them.
func (r *Receiver) WaitFor(t T, n int) []Claims {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if errs := r.Errors(); len(errs) > 0 {
			t.Fatalf("receiver at %s got invalid logout tokens: %v", r.URL, errs)
		}
		got := r.Tokens()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver at %s: %d logout tokens after 15s, want %d", r.URL, len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
