package servertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/idp/idp/internal/sessions"
	"github.com/jackc/pgx/v5"
)

// LogoutClaims are the claims of a verified logout token.
type LogoutClaims struct {
	jwt.Claims
	SID    string                     `json:"sid"`
	Events map[string]json.RawMessage `json:"events"`
	Nonce  *string                    `json:"nonce"`
}

// Receiver is an app's back-channel logout endpoint. It verifies every
// logout token it receives against the provider's JWKS and checks each
// claim Back-Channel Logout 1.0 requires; tokens that fail are recorded as
// errors, which Check reports.
type Receiver struct {
	*httptest.Server
	h        *Harness
	clientID string

	mu       sync.Mutex
	tokens   []LogoutClaims
	errs     []string
	failNext int // answer 503 to this many requests first
}

const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// NewReceiver starts a receiver for clientID.
func (h *Harness) NewReceiver(clientID string) *Receiver {
	r := &Receiver{h: h, clientID: clientID}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	h.T.Cleanup(r.Close)
	return r
}

// FailNext makes the next n deliveries get a 503.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.failNext = n
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failNext > 0 {
		r.failNext--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	claims, err := r.verify(req.PostFormValue("logout_token"))
	if err != nil {
		r.errs = append(r.errs, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.tokens = append(r.tokens, claims)
	w.WriteHeader(http.StatusOK)
}

func (r *Receiver) verify(raw string) (LogoutClaims, error) {
	var c LogoutClaims
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return c, fmt.Errorf("parse: %w", err)
	}
	if typ, _ := tok.Headers[0].ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		return c, fmt.Errorf("typ = %q, want logout+jwt", typ)
	}
	// The app's view: the provider's published JWKS, over HTTP.
	resp, err := http.Get(r.h.Issuer + "/.well-known/jwks.json")
	if err != nil {
		return c, err
	}
	var set jose.JSONWebKeySet
	err = json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if err != nil {
		return c, fmt.Errorf("jwks: %w", err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return c, fmt.Errorf("kid %q not in the JWKS", tok.Headers[0].KeyID)
	}
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		return c, fmt.Errorf("signature: %w", err)
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: r.h.Issuer, AnyAudience: jwt.Audience{r.clientID}, Time: time.Now()}, time.Minute); err != nil {
		return c, fmt.Errorf("claims: %w", err)
	}
	switch {
	case c.IssuedAt == nil || c.Expiry == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) != 2*time.Minute:
		return c, fmt.Errorf("exp - iat is not two minutes")
	case c.ID == "":
		return c, fmt.Errorf("no jti")
	case c.Subject == "" || c.SID == "":
		return c, fmt.Errorf("sub and sid are required here")
	case c.Nonce != nil:
		return c, fmt.Errorf("a logout token must not carry a nonce")
	case string(c.Events[logoutEvent]) != "{}":
		return c, fmt.Errorf("events = %v, want the back-channel logout event with {}", c.Events)
	}
	return c, nil
}

// Tokens returns the verified tokens so far.
func (r *Receiver) Tokens() []LogoutClaims {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tokens)
}

// WaitFor waits (bounded) until n valid tokens have arrived and no invalid
// one, and returns them.
func (r *Receiver) WaitFor(t *testing.T, n int) []LogoutClaims {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		got, errs := len(r.tokens), slices.Clone(r.errs)
		r.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("receiver %s got invalid logout tokens: %v", r.clientID, errs)
		}
		if got >= n {
			return r.Tokens()
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver %s: %d logout tokens after 15s, want %d", r.clientID, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogoutRow is a logout notification's outbox row as tests check it.
type LogoutRow struct {
	ID        int64
	SID       string
	ClientID  string
	Attempts  int
	Delivered bool
}

// LogoutRows lists the logout notifications queued so far, oldest first.
func (h *Harness) LogoutRows(t *testing.T) []LogoutRow {
	t.Helper()
	rows, err := h.DB.Pool.Query(h.Ctx, `
		SELECT id, sid::text, client_id, attempts, delivered_at IS NOT NULL
		FROM outbox WHERE kind = $1 ORDER BY id`, sessions.LogoutKind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogoutRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WaitDelivered waits until every queued logout notification has been
// delivered, and returns them. A row delivered on its first attempt was
// POSTed once: with every row so, no app can have been told twice, which
// a test can then assert without waiting for a duplicate that never comes.
func (h *Harness) WaitDelivered(t *testing.T) []LogoutRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := h.LogoutRows(t)
		pending := 0
		for _, r := range rows {
			if !r.Delivered {
				pending++
			}
		}
		if pending == 0 {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d logout notifications still undelivered after 10s", pending, len(rows))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
