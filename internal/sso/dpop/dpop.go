// Package dpop checks DPoP proofs (RFC 9449): the JWT a client signs with
// its own key for each request, so that a token bound to that key (by the
// key's thumbprint, cnf.jkt) is worthless to whoever steals it without the
// key. It owns the proof's rules (typ, an asymmetric alg, the public jwk it
// is signed with, htm, htu, the iat window, ath) and the record of proofs
// seen, in PostgreSQL, so a proof replayed to another instance is refused
// too.
package dpop

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// Header is the request header that carries a proof.
const Header = "DPoP"

// Algs are the signature algorithms a proof may use: asymmetric only (a
// shared key would bind nothing to the client).
var Algs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256, jose.EdDSA}

// AlgNames are Algs as strings, for discovery's
// dpop_signing_alg_values_supported.
func AlgNames() []string {
	out := make([]string, len(Algs))
	for i, a := range Algs {
		out[i] = string(a)
	}
	return out
}

// Window bounds a proof's iat: at most MaxAge old and Skew ahead of the
// server's clock. A proof's jti is remembered for as long as it could be
// accepted.
const (
	MaxAge = 2 * time.Minute
	Skew   = time.Minute
)

// MaxLen bounds a proof's size before it is parsed.
const MaxLen = 8 << 10

// ErrInvalid wraps every reason a proof is refused; the message says which,
// in words a client developer can act on.
var ErrInvalid = errors.New("dpop: invalid proof")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ErrUseNonce: nonces are on and the proof has none, or a stale one; the
// client retries with the nonce of the DPoP-Nonce header (RFC 9449 §8).
var ErrUseNonce = errors.New("dpop: the proof must carry the server's current nonce")

// NonceHeader is the response header that hands out the nonce.
const NonceHeader = "DPoP-Nonce"

// NonceWindow is how long a nonce is current; the previous window's is
// still accepted, so a nonce lives one to two windows.
const NonceWindow = 5 * time.Minute

// Checker checks proofs and remembers them.
type Checker struct {
	Pool *pgxpool.Pool
	Now  func() time.Time
	// NonceKey, when set, turns server nonces on: every proof must carry
	// a nonce this provider issued lately. A nonce is an HMAC of the time
	// window under the key, so every instance with the same key issues and
	// accepts the same nonces without storing any.
	NonceKey []byte
}

// Nonce is the current nonce, "" when nonces are off.
func (c *Checker) Nonce() string {
	if len(c.NonceKey) == 0 {
		return ""
	}
	return c.nonceAt(c.Now().Unix() / int64(NonceWindow/time.Second))
}

func (c *Checker) nonceAt(window int64) string {
	mac := hmac.New(sha256.New, c.NonceKey)
	fmt.Fprintf(mac, "dpop-nonce:%d", window)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// nonceValid reports whether n is the current or the previous window's
// nonce (constant-time).
func (c *Checker) nonceValid(n string) bool {
	w := c.Now().Unix() / int64(NonceWindow/time.Second)
	ok := false
	for _, win := range []int64{w, w - 1} {
		ok = hmac.Equal([]byte(n), []byte(c.nonceAt(win))) || ok
	}
	return ok
}

// Proof is a checked proof: JKT is the SHA-256 thumbprint (RFC 7638) of
// its key, base64url, the value of cnf.jkt.
type Proof struct {
	JKT string
}

// Request is what a proof must match.
type Request struct {
	Method string
	// URL is the endpoint's URL, without query or fragment.
	URL string
	// AccessToken, when the request presents one, must be the proof's ath.
	AccessToken string
}

// FromHeader returns the request's one proof: "" when there is none, an
// error when there are several (RFC 9449 §4.3 check 1).
func FromHeader(h http.Header) (string, error) {
	vs := h.Values(Header)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1 || strings.Contains(vs[0], ","):
		return "", invalid("more than one DPoP header")
	case vs[0] == "":
		return "", invalid("the DPoP header is empty")
	}
	return vs[0], nil
}

// claims are a proof's claims.
type claims struct {
	JTI   string           `json:"jti"`
	HTM   string           `json:"htm"`
	HTU   string           `json:"htu"`
	IAT   *jwt.NumericDate `json:"iat"`
	ATH   string           `json:"ath"`
	Nonce string           `json:"nonce"`
}

// ErrReplayed: the proof was seen before, by this instance or another.
var ErrReplayed = fmt.Errorf("%w: the proof has been used before (jti replayed)", ErrInvalid)

// Check verifies proof for req (RFC 9449 §4.3) and records its jti: a
// proof seen before, by this instance or another, is refused with
// ErrReplayed. A proof is recorded only once it is otherwise valid. In a
// pipelined unit of work (db.Pipeline) the record is queued in it, and a
// replay fails the unit at its commit, so the request that carries it
// writes nothing and costs no round trip more; elsewhere it is recorded
// at once.
func (c *Checker) Check(ctx context.Context, proof string, req Request) (Proof, error) {
	p, jti, err := c.verify(proof, req)
	if err != nil {
		return Proof{}, err
	}
	// One row per key and jti: RFC 9449 §11.1 asks for jti unique per key.
	key := sha256.Sum256([]byte(p.JKT + "\x00" + jti))
	const record = `
		WITH i AS (INSERT INTO dpop_proofs (key_hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1)
		SELECT idp_assert(EXISTS (SELECT 1 FROM i), 'dpop proof replayed')`
	expires := c.Now().Add(MaxAge + Skew)
	if u, ok := db.From(ctx); ok && u.Pipelined() {
		u.Queue(record, key[:], expires).MapErr(replayed)
		return p, nil
	}
	if _, err := db.Conn(ctx, c.Pool).Exec(ctx, record, key[:], expires); err != nil {
		return Proof{}, replayed(err)
	}
	return p, nil
}

func replayed(err error) error {
	if db.IsAssertFailure(err) {
		return ErrReplayed
	}
	return fmt.Errorf("dpop: record proof: %w", err)
}

// verify checks everything but replay.
func (c *Checker) verify(proof string, req Request) (Proof, string, error) {
	if len(proof) > MaxLen {
		return Proof{}, "", invalid("the proof is longer than %d bytes", MaxLen)
	}
	tok, err := jwt.ParseSigned(proof, Algs)
	if err != nil {
		return Proof{}, "", invalid("not a JWT signed with one of %s", strings.Join(AlgNames(), ", "))
	}
	if len(tok.Headers) != 1 {
		return Proof{}, "", invalid("the proof must have one signature")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return Proof{}, "", invalid("typ must be dpop+jwt")
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return Proof{}, "", invalid("the header must carry the public key (jwk) the proof is signed with")
	}
	var cl claims
	if err := tok.Claims(jwk.Key, &cl); err != nil {
		return Proof{}, "", invalid("the signature does not verify with the header's jwk")
	}
	now := c.Now()
	switch {
	case cl.JTI == "" || len(cl.JTI) > 256:
		return Proof{}, "", invalid("jti is missing or too long")
	case cl.HTM != req.Method:
		return Proof{}, "", invalid("htm is %q, this request is %s", cl.HTM, req.Method)
	case !sameURL(cl.HTU, req.URL):
		return Proof{}, "", invalid("htu is %q, this request is for %s", cl.HTU, req.URL)
	case cl.IAT == nil:
		return Proof{}, "", invalid("iat is missing")
	case cl.IAT.Time().Before(now.Add(-MaxAge)):
		return Proof{}, "", invalid("the proof is too old (iat more than %s ago)", MaxAge)
	case cl.IAT.Time().After(now.Add(Skew)):
		return Proof{}, "", invalid("iat is in the future")
	}
	if req.AccessToken != "" && cl.ATH != TokenHash(req.AccessToken) {
		return Proof{}, "", invalid("ath does not match the access token")
	}
	if req.AccessToken == "" && cl.ATH != "" {
		return Proof{}, "", invalid("ath is set but no access token is presented")
	}
	if len(c.NonceKey) > 0 && !c.nonceValid(cl.Nonce) {
		return Proof{}, "", ErrUseNonce
	}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Proof{}, "", invalid("the jwk has no thumbprint")
	}
	return Proof{JKT: base64.RawURLEncoding.EncodeToString(thumb)}, cl.JTI, nil
}

// TokenHash is ath for an access token: base64url of its SHA-256.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sameURL compares htu with the endpoint's URL as RFC 9449 §4.3 asks:
// without query and fragment, scheme and host case-insensitively, default
// ports dropped.
func sameURL(htu, want string) bool {
	a, err := url.Parse(htu)
	if err != nil || !a.IsAbs() || a.Opaque != "" || a.User != nil {
		return false
	}
	b, err := url.Parse(want)
	if err != nil {
		return false
	}
	norm := func(u *url.URL) string {
		host := strings.ToLower(u.Host)
		scheme := strings.ToLower(u.Scheme)
		host = strings.TrimSuffix(host, map[string]string{"http": ":80", "https": ":443"}[scheme])
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		return scheme + "://" + host + path
	}
	return norm(a) == norm(b)
}

// Sweeps are the janitor's for this package's table: a proof's jti is
// kept as long as the proof could be replayed, and an hour more for clocks
// that lag.
var Sweeps = []db.Sweep{
	{Table: "dpop_proofs", Key: "key_hash", Due: "expires_at < $1", Keep: time.Hour},
}
