package bench

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/ssf"
	ssfreceiver "github.com/idp/idp/internal/ssf/receiver"
)

// SETs is the Shared Signals side of the revoke-all: one push stream
// (RFC 8935) whose receiver runs here and gets one session-revoked SET
// per session.
type SETs struct {
	StreamID string `json:"stream_id"`
	Expected int    `json:"expected"`
	Received int    `json:"received"` // distinct jti, verified
	// Last is the time, from the revocation's start, until the last
	// expected SET arrived.
	Last       time.Duration `json:"last_ns"`
	Duplicates int64         `json:"duplicates"` // a jti again: delivery is at least once
	Invalid    int64         `json:"invalid"`
	// Connections is how many TCP connections the provider opened to the
	// receiver to push them.
	Connections int64 `json:"connections"`
}

// streamClientID is the receiver's OAuth client.
const streamClientID = "bench-ssf-receiver"

// setReceiver is a Shared Signals receiver's push endpoint. It verifies
// each SET with the provider's own receiver-side verifier (package
// ssf/receiver: typ secevent+jwt, a signature by a key of the JWKS the
// transmitter's configuration names, iss, aud, iat, a jti), then that it
// is a session-revoked event about the revoke-all's user from an
// administrator, all of one revocation (one txn); it counts each jti once.
type setReceiver struct {
	subject  ssf.Subject
	auth     string // the stream's authorization_header
	verifier *ssfreceiver.Verifier
	from     ssfreceiver.Transmitter
	tally    *tally
	srv      *http.Server
	url      string
	conns    atomic.Int64
	// verified gets the state of each verification event.
	verified chan string

	mu         sync.Mutex
	streamID   string // set once the stream exists
	seen       map[string]bool
	txn        string
	duplicates int64
	invalid    int64
	firstErr   string
}

func startSETReceiver(issuer, userID string, t *tally) (*setReceiver, error) {
	b := make([]byte, 24)
	rand.Read(b)
	sr := &setReceiver{
		subject:  ssf.IssSub(issuer, userID),
		auth:     "Bearer " + hex.EncodeToString(b),
		verifier: &ssfreceiver.Verifier{Issuer: streamClientID, AllowPrivate: true},
		from:     ssfreceiver.Transmitter{ID: "bench", Issuer: issuer, ConfigURL: issuer + "/.well-known/ssf-configuration"},
		tally:    t,
		verified: make(chan string, 1),
		seen:     map[string]bool{},
	}
	srv, base, err := serveLoopback(http.HandlerFunc(sr.serve), &sr.conns)
	if err != nil {
		return nil, err
	}
	sr.srv, sr.url = srv, base+"/ssf/events"
	return sr, nil
}

func (sr *setReceiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sr.srv.Shutdown(ctx) //nolint:errcheck
}

// serve answers as RFC 8935 §2 says: 202 for a SET accepted (a repeated
// jti too: the transmitter's retry after a lost answer), 400 with err and
// description for one refused, 401 without the stream's Authorization.
func (sr *setReceiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a SET", http.StatusMethodNotAllowed)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(sr.auth)) != 1 {
		sr.refuse(w, http.StatusUnauthorized, &ssfreceiver.SETError{Code: "authentication_failed", Description: "wrong or missing Authorization"})
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/secevent+jwt" {
		sr.refuse(w, http.StatusBadRequest, &ssfreceiver.SETError{Code: "invalid_request", Description: "Content-Type is not application/secevent+jwt"})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<10))
	if err != nil {
		sr.refuse(w, http.StatusBadRequest, &ssfreceiver.SETError{Code: "invalid_request", Description: "unreadable body"})
		return
	}
	c, err := sr.verifier.Verify(r.Context(), sr.from, string(raw))
	if err != nil {
		if e, ok := ssfreceiver.IsRefusal(err); ok {
			sr.refuse(w, http.StatusBadRequest, e)
			return
		}
		// The provider's keys could not be fetched: not the SET's fault,
		// so the transmitter is to retry; still an error of the run.
		sr.note(err.Error())
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
		return
	}
	if state, ok := c.Events[ssf.EventVerification]; ok && len(c.Events) == 1 {
		sr.verification(w, c, state)
		return
	}
	if err := sr.check(c); err != nil {
		sr.refuse(w, http.StatusBadRequest, &ssfreceiver.SETError{Code: "invalid_request", Description: err.Error()})
		return
	}
	sr.mu.Lock()
	fresh := !sr.seen[c.JTI]
	if fresh {
		sr.seen[c.JTI] = true
	} else {
		sr.duplicates++
	}
	sr.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	if fresh {
		sr.tally.arrive()
	}
}

// check is what the revoke-all promises of each SET beyond a valid token.
func (sr *setReceiver) check(c ssfreceiver.Claims) error {
	ev, ok := c.Events[ssf.EventSessionRevoked]
	if !ok || len(c.Events) != 1 {
		return fmt.Errorf("events %v, want session-revoked alone", keysOf(c.Events))
	}
	var meta struct {
		EventTimestamp   int64  `json:"event_timestamp"`
		InitiatingEntity string `json:"initiating_entity"`
	}
	if err := json.Unmarshal(ev, &meta); err != nil || meta.EventTimestamp <= 0 || meta.InitiatingEntity != ssf.InitiatorAdmin {
		return fmt.Errorf("session-revoked %s, want an event_timestamp and initiating_entity admin", ev)
	}
	if c.Subject == nil || *c.Subject != sr.subject {
		return fmt.Errorf("sub_id %+v, want %+v", c.Subject, sr.subject)
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if sr.txn == "" {
		sr.txn = c.TxnID
	}
	if c.TxnID == "" || c.TxnID != sr.txn {
		return fmt.Errorf("txn %q, want every SET of the revocation to share one (first %q)", c.TxnID, sr.txn)
	}
	return nil
}

// verification takes the answer to the stream's verification request.
func (sr *setReceiver) verification(w http.ResponseWriter, c ssfreceiver.Claims, ev json.RawMessage) {
	var v struct {
		State string `json:"state"`
	}
	sr.mu.Lock()
	streamID := sr.streamID
	sr.mu.Unlock()
	if err := json.Unmarshal(ev, &v); err != nil || c.Subject == nil || *c.Subject != ssf.Opaque(streamID) {
		sr.refuse(w, http.StatusBadRequest, &ssfreceiver.SETError{Code: "invalid_request", Description: "a verification event not about this stream"})
		return
	}
	w.WriteHeader(http.StatusAccepted)
	select {
	case sr.verified <- v.State:
	default: // one is waited for at a time
	}
}

func (sr *setReceiver) refuse(w http.ResponseWriter, status int, e *ssfreceiver.SETError) {
	sr.mu.Lock()
	sr.invalid++
	sr.mu.Unlock()
	sr.note(e.Error())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e) //nolint:errcheck // the transmitter may be gone
}

func (sr *setReceiver) note(msg string) {
	sr.mu.Lock()
	if sr.firstErr == "" {
		sr.firstErr = msg
	}
	sr.mu.Unlock()
}

// outcome is what the receiver counted.
func (sr *setReceiver) outcome(s *SETs) (firstErr string) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	s.Duplicates, s.Invalid, s.Connections = sr.duplicates, sr.invalid, sr.conns.Load()
	s.Received = len(sr.seen)
	return sr.firstErr
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// openStream does what a receiver does to subscribe: register as an
// OAuth client with scope ssf, get a token by client_credentials, create
// a push stream for session-revoked at POST /ssf/streams, and ask for a
// verification event (SSF §8.1.4), waiting until it has arrived: the
// stream then works, and the receiver holds the provider's keys before
// the clock starts.
func (r *runner) openStream(ctx context.Context, sr *setReceiver) (string, error) {
	secret, err := r.createClient(ctx, clients.Client{ID: streamClientID, GrantTypes: []string{"client_credentials"},
		Scopes: []string{ssf.Scope}})
	if err != nil {
		return "", err
	}
	var tok tokenResponse
	if err := postForm(ctx, r.hc, r.in.issuer+"/oauth2/token", streamClientID, secret,
		url.Values{"grant_type": {"client_credentials"}, "scope": {ssf.Scope}}, &tok); err != nil {
		return "", fmt.Errorf("bench: stream receiver's token: %w", err)
	}
	bearer := "Bearer " + tok.AccessToken
	status, body, err := r.bearerCall(ctx, http.MethodPost, "/ssf/streams", bearer, map[string]any{
		"delivery": map[string]string{"method": ssf.DeliveryPush, "endpoint_url": sr.url,
			"authorization_header": sr.auth},
		"events_requested": []string{ssf.EventSessionRevoked},
		"description":      "idp-bench revoke_all",
	})
	if err != nil {
		return "", fmt.Errorf("bench: POST /ssf/streams: %w", err)
	}
	var st struct {
		StreamID string `json:"stream_id"`
	}
	if status != http.StatusCreated || json.Unmarshal(body, &st) != nil || st.StreamID == "" {
		return "", fmt.Errorf("bench: POST /ssf/streams: HTTP %d: %.300s", status, body)
	}
	sr.mu.Lock()
	sr.streamID = st.StreamID
	sr.mu.Unlock()
	state := "bench-" + st.StreamID
	status, body, err = r.bearerCall(ctx, http.MethodPost, "/ssf/verify", bearer, map[string]string{"stream_id": st.StreamID, "state": state})
	if err != nil || status != http.StatusNoContent {
		return "", fmt.Errorf("bench: POST /ssf/verify: HTTP %d %.300s %v", status, body, err)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case got := <-sr.verified:
			if got == state {
				return st.StreamID, nil
			}
		case <-timeout.C:
			return "", errors.New("bench: the stream's verification event did not arrive in 30 s: " + sr.outcome(&SETs{}))
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
