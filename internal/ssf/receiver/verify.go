package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/ssf"
)

// SETError is why a SET is refused, as RFC 8935 §2.4 names it (err,
// description); push answers it with 400, poll reports it in setErrs.
type SETError struct {
	Code        string `json:"err"`
	Description string `json:"description"`
}

func (e *SETError) Error() string { return e.Code + ": " + e.Description }

func refuse(code, format string, args ...any) error {
	return &SETError{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Claims are the verified claims of a SET.
type Claims struct {
	Issuer   string                     `json:"iss"`
	Audience audience                   `json:"aud"`
	IssuedAt int64                      `json:"iat"`
	JTI      string                     `json:"jti"`
	TxnID    string                     `json:"txn,omitempty"`
	Subject  *ssf.Subject               `json:"sub_id,omitempty"`
	Events   map[string]json.RawMessage `json:"events"`
}

// audience is aud as a string or an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// Limits of what the receiver fetches and accepts.
const (
	fetchTimeout = 10 * time.Second
	maxDocument  = 256 << 10 // a configuration or a JWKS
	cacheFor     = 10 * time.Minute
	refetchAfter = 30 * time.Second // an unknown kid refetches the JWKS at most this often
	// MaxAge is the oldest iat accepted: a transmitter holds events for a
	// paused stream up to 7 days (ours does); a jti is remembered longer.
	MaxAge = 7 * 24 * time.Hour
	// MaxSkew is how far in the future an iat may be.
	MaxSkew = 5 * time.Minute
	// Remember is how long a jti is kept.
	Remember = MaxAge + 24*time.Hour
)

// algs are the signature algorithms a SET may use; none ("unsigned") and
// HMAC are never among them.
var algs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// Verifier checks SETs against their transmitter's published keys, which
// it fetches (configuration, then jwks_uri) and caches.
type Verifier struct {
	Issuer       string // ours: the audience
	AllowPrivate bool
	Now          func() time.Time

	once   sync.Once
	client *http.Client
	mu     sync.Mutex
	cache  map[string]*keySet // by transmitter id
}

type keySet struct {
	config  configuration
	keys    jose.JSONWebKeySet
	fetched time.Time
}

// configuration is what the receiver reads of a transmitter's
// configuration metadata (SSF 1.0 §7.1).
type configuration struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	ConfigurationEndpoint string `json:"configuration_endpoint"`
	VerificationEndpoint  string `json:"verification_endpoint"`
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Client is the HTTP client of every request to a transmitter (newClient).
func (v *Verifier) Client() *http.Client {
	v.once.Do(func() { v.client = newClient(v.AllowPrivate) })
	return v.client
}

// newClient is an HTTP client for requests to transmitters: a timeout, no
// redirects, and, unless allowed, no internal address (netguard).
func newClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: fetchTimeout}
	if !allowPrivate {
		d.Control = netguard.Control
	}
	return &http.Client{Timeout: fetchTimeout + 25*time.Second, // a long poll may wait
		Transport:     &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: fetchTimeout, ResponseHeaderTimeout: fetchTimeout + 25*time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// getJSON fetches a bounded JSON document.
func getJSON(ctx context.Context, client *http.Client, u string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return err
	}
	if len(body) > maxDocument {
		return fmt.Errorf("%s: larger than %d bytes", u, maxDocument)
	}
	return json.Unmarshal(body, out)
}

// keys returns the transmitter's keys, fetched if not cached, too old, or
// (fresh true) if the cache is older than refetchAfter.
func (v *Verifier) keys(ctx context.Context, t Transmitter, fresh bool) (*keySet, error) {
	v.mu.Lock()
	ks := v.cache[t.ID]
	v.mu.Unlock()
	age := time.Duration(1<<63 - 1)
	if ks != nil {
		age = v.now().Sub(ks.fetched)
	}
	if ks != nil && age < cacheFor && !(fresh && age > refetchAfter) {
		return ks, nil
	}
	var c configuration
	if err := getJSON(ctx, v.Client(), t.ConfigURL, &c); err != nil {
		return ks, fmt.Errorf("receiver: transmitter configuration: %w", err)
	}
	if c.Issuer != t.Issuer {
		return ks, fmt.Errorf("receiver: transmitter configuration names issuer %q, not %q", c.Issuer, t.Issuer)
	}
	store := &Store{AllowPrivate: v.AllowPrivate}
	if err := store.checkURL("jwks_uri", c.JWKSURI); err != nil {
		return ks, fmt.Errorf("receiver: transmitter configuration: %w", err)
	}
	n := &keySet{config: c, fetched: v.now()}
	if err := getJSON(ctx, v.Client(), c.JWKSURI, &n.keys); err != nil {
		return ks, fmt.Errorf("receiver: transmitter keys: %w", err)
	}
	v.mu.Lock()
	if v.cache == nil {
		v.cache = map[string]*keySet{}
	}
	v.cache[t.ID] = n
	v.mu.Unlock()
	return n, nil
}

// Verify checks raw as a SET from t: typ, a signature by one of t's keys,
// iss, aud (our issuer or t's audience), iat within the window, a jti, an
// event. Whether the jti is new is the caller's to check, in the
// transaction that acts on it.
func (v *Verifier) Verify(ctx context.Context, t Transmitter, raw string) (Claims, error) {
	raw = strings.TrimSpace(raw)
	jws, err := jose.ParseSigned(raw, algs)
	if err != nil {
		return Claims{}, refuse("invalid_request", "not a signed JWT with an accepted algorithm")
	}
	if len(jws.Signatures) != 1 {
		return Claims{}, refuse("invalid_request", "one signature expected")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders["typ"].(string); !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), ssf.TokenType) {
		return Claims{}, refuse("invalid_request", "typ is not secevent+jwt")
	}
	ks, err := v.keys(ctx, t, false)
	if ks == nil {
		return Claims{}, err // not the SET's fault: the caller answers as for an outage
	}
	payload, ok := verifyWith(jws, ks.keys, h.KeyID)
	if !ok {
		// A rotated key: refetch, at most every refetchAfter.
		if ks2, _ := v.keys(ctx, t, true); ks2 != nil {
			payload, ok = verifyWith(jws, ks2.keys, h.KeyID)
		}
	}
	if !ok {
		return Claims{}, refuse("invalid_key", "the signature does not verify with the transmitter's keys")
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, refuse("invalid_request", "the claims are not a SET")
	}
	switch {
	case c.Issuer != t.Issuer:
		return Claims{}, refuse("invalid_issuer", "iss is not the transmitter")
	case !slices.Contains(c.Audience, v.Issuer) && (t.Audience == "" || !slices.Contains(c.Audience, t.Audience)):
		return Claims{}, refuse("invalid_audience", "aud does not name this receiver")
	case c.JTI == "" || len(c.JTI) > 256:
		return Claims{}, refuse("invalid_request", "no jti")
	case len(c.Events) == 0:
		return Claims{}, refuse("invalid_request", "no event")
	}
	now := v.now()
	iat := time.Unix(c.IssuedAt, 0)
	if c.IssuedAt <= 0 || iat.After(now.Add(MaxSkew)) || iat.Before(now.Add(-MaxAge)) {
		return Claims{}, refuse("invalid_request", "iat is missing or outside the accepted window")
	}
	return c, nil
}

func verifyWith(jws *jose.JSONWebSignature, set jose.JSONWebKeySet, kid string) ([]byte, bool) {
	candidates := set.Keys
	if kid != "" {
		candidates = set.Key(kid)
	}
	for _, k := range candidates {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if p, err := jws.Verify(k); err == nil {
			return p, true
		}
	}
	return nil, false
}

// IsRefusal reports whether err is the SET's fault (a SETError).
func IsRefusal(err error) (*SETError, bool) {
	var e *SETError
	ok := errors.As(err, &e)
	return e, ok
}
