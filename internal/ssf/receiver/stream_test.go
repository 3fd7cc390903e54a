package receiver_test

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/ssf/receiver"
)

// A transmitter added with a credential for its API gets its stream from
// us: created at first over its management API, verified by a
// verification event that arrives by the stream's own delivery, then
// carrying first's events to second; removing it deletes the stream.
func TestReceiver_CreatesStream(t *testing.T) {
	for _, c := range []struct {
		name, delivery string
		cred           func(p *pair) receiver.New
	}{
		{"push, bearer token", receiver.DeliveryPush, func(p *pair) receiver.New { return receiver.New{Token: p.stream.token} }},
		{"push, client credentials", receiver.DeliveryPush, clientCredentials},
		{"poll, bearer token", receiver.DeliveryPoll, func(p *pair) receiver.New { return receiver.New{Token: p.stream.token} }},
		{"poll, client credentials", receiver.DeliveryPoll, clientCredentials},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			store := p.second.Srv.Signals.Store
			n := c.cred(p)
			n.Issuer, n.Subjects, n.CreateStream = p.first.Issuer, []string{receiver.SubjectsEmail}, c.delivery
			n.Events = []string{"session-revoked", "device-compliance-change"}
			tx, header, err := store.Add(p.second.Ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if header != "" {
				t.Error("the push header is returned, though only the transmitter needs it")
			}
			// The stream's aud is the client id first knows us by.
			if tx.StreamID == "" || tx.Audience != "second" || tx.Delivery != c.delivery {
				t.Fatalf("transmitter = %+v, want a stream id, audience second, delivery %s", tx, c.delivery)
			}
			st := p.stream.must(http.StatusOK, "GET", "/ssf/streams?stream_id="+tx.StreamID, nil)
			d := st["delivery"].(map[string]any)
			wantURL, wantMethod := p.second.Issuer+receiver.PathReceive+tx.ID, ssf.DeliveryPush
			if c.delivery == receiver.DeliveryPoll {
				wantURL, wantMethod = p.first.Issuer+ssf.PathPoll, ssf.DeliveryPoll
			}
			if d["method"] != wantMethod || d["endpoint_url"] != wantURL || tx.PollURL != map[bool]string{true: wantURL}[c.delivery == receiver.DeliveryPoll] {
				t.Errorf("stream at first: delivery %v; poll URL here %q", d, tx.PollURL)
			}
			// What first does not send (device-compliance-change) is not delivered.
			if ev := st["events_delivered"].([]any); len(ev) != 1 || ev[0] != ssf.EventSessionRevoked {
				t.Errorf("events_delivered = %v, want session-revoked", ev)
			}

			if err := store.RequestVerification(p.second.Ctx, tx.ID); err != nil {
				t.Fatal(err)
			}
			if got, _ := store.Get(p.second.Ctx, tx.ID); got.VerifyRequested.IsZero() {
				t.Error("the verification request is not recorded")
			}
			waitFor(t, "the verification event did not arrive", func() bool {
				got, err := store.Get(p.second.Ctx, tx.ID)
				return err == nil && !got.VerifiedAt.IsZero()
			})
			if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM ssf_transmitters WHERE verify_state_hash IS NOT NULL`); n != 0 {
				t.Error("the verified state is still awaited")
			}

			p.stream.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": tx.StreamID,
				"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
			p.adminRevokeAll(t)
			p.checkEnded(t)

			got, _ := store.Get(p.second.Ctx, tx.ID)
			if err := store.DeleteStream(p.second.Ctx, got); err != nil {
				t.Fatal(err)
			}
			if n := dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM ssf_streams`); n != 0 {
				t.Errorf("%d streams at first after DeleteStream, want 0", n)
			}
			if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action IN ('ssf.transmitter_add', 'ssf.transmitter_verify')`); n != 2 {
				t.Errorf("%d audit entries for add and verify, want 2", n)
			}
		})
	}
}

func clientCredentials(p *pair) receiver.New {
	return receiver.New{ClientID: p.stream.id, ClientSecret: p.stream.secret, TokenURL: p.first.Issuer + "/oauth2/token", TokenScope: ssf.Scope}
}

// A stream we have at first already (first allows one per receiver: 409)
// is adopted and reconfigured, not duplicated.
func TestReceiver_AdoptsExistingStream(t *testing.T) {
	p := newPair(t)
	existing := p.stream.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}, "events_requested": []string{ssf.EventAccountDisabled}})["stream_id"].(string)
	tx, _, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer, Subjects: []string{receiver.SubjectsEmail},
		Token: p.stream.token, CreateStream: receiver.DeliveryPush})
	if err != nil {
		t.Fatal(err)
	}
	if tx.StreamID != existing {
		t.Fatalf("stream id %q, want the existing %q", tx.StreamID, existing)
	}
	st := p.stream.must(http.StatusOK, "GET", "/ssf/streams?stream_id="+existing, nil)
	if d := st["delivery"].(map[string]any); d["method"] != ssf.DeliveryPush || d["endpoint_url"] != p.second.Issuer+receiver.PathReceive+tx.ID {
		t.Errorf("the adopted stream's delivery = %v, want a push to us", d)
	}
	if n := dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM ssf_streams`); n != 1 {
		t.Errorf("%d streams at first, want 1", n)
	}
	p.stream.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": existing,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	p.adminRevokeAll(t)
	p.checkEnded(t)
}

// A transmitter that cannot be reached or refuses leaves nothing behind,
// here or there.
func TestReceiver_CreateStreamRefused(t *testing.T) {
	p := newPair(t)
	noScope := tokenClient(t, p.first, "noscope", nil)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	ours := p.second.Srv.Signals.Store
	noIssuer := *ours
	noIssuer.Issuer = ""
	for _, c := range []struct {
		name  string
		store *receiver.Store
		n     receiver.New
		want  error
	}{
		{"configuration unreachable", ours, receiver.New{ConfigURL: gone.URL + ssf.PathConfiguration, Token: p.stream.token, CreateStream: receiver.DeliveryPush}, receiver.ErrTransmitter},
		{"configuration of another issuer", ours, receiver.New{ConfigURL: p.second.Issuer + ssf.PathConfiguration, Token: p.stream.token, CreateStream: receiver.DeliveryPush}, receiver.ErrTransmitter},
		{"403: a token without the ssf scope", ours, receiver.New{Token: noScope.token, CreateStream: receiver.DeliveryPush}, receiver.ErrTransmitter},
		{"401: a wrong token", ours, receiver.New{Token: "not-a-token", CreateStream: receiver.DeliveryPoll}, receiver.ErrTransmitter},
		{"wrong client secret", ours, receiver.New{ClientID: p.stream.id, ClientSecret: "wrong", TokenURL: p.first.Issuer + "/oauth2/token",
			CreateStream: receiver.DeliveryPoll}, receiver.ErrTransmitter},
		{"no credential", ours, receiver.New{CreateStream: receiver.DeliveryPoll}, receiver.ErrInvalid},
		{"a poll URL with a stream to create", ours, receiver.New{Token: p.stream.token, PollURL: p.first.Issuer + "/ssf/poll", CreateStream: receiver.DeliveryPoll}, receiver.ErrInvalid},
		{"push without our issuer", &noIssuer, receiver.New{Token: p.stream.token, CreateStream: receiver.DeliveryPush}, receiver.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.n.Issuer, c.n.Subjects = p.first.Issuer, []string{receiver.SubjectsEmail}
			_, _, err := c.store.Add(p.second.Ctx, c.n)
			if !errors.Is(err, c.want) {
				t.Fatalf("Add: %v, want %v", err, c.want)
			}
			if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM ssf_transmitters`); n != 0 {
				t.Errorf("%d transmitters stored", n)
			}
			if n := dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM ssf_streams`); n != 0 {
				t.Errorf("%d streams at first", n)
			}
			if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action LIKE 'ssf.%'`); n != 0 {
				t.Errorf("%d audit entries", n)
			}
		})
	}
}

// streamSETs is a transmitter whose stream we created at first, and SETs
// signed by first's key pushed to us about it.
type streamSETs struct {
	p    *pair
	tx   receiver.Transmitter
	sign signer
	auth string
}

func newStreamSETs(t *testing.T) *streamSETs {
	p := newPair(t)
	// Our own Authorization header for first's pushes is not known to
	// the test: the SETs come to a transmitter added by hand, whose row
	// then gets the stream id (as Add with CreateStream leaves it).
	tx, header, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer, Subjects: []string{receiver.SubjectsEmail}})
	if err != nil {
		t.Fatal(err)
	}
	tx.StreamID = "stream-1"
	if _, err := p.second.DB.Pool.Exec(p.second.Ctx, `UPDATE ssf_transmitters SET stream_id = $2 WHERE id = $1`, tx.ID, tx.StreamID); err != nil {
		t.Fatal(err)
	}
	kid, key, err := p.first.Srv.Keys.Signer("RS256")
	if err != nil {
		t.Fatal(err)
	}
	return &streamSETs{p: p, tx: tx, sign: signer{t: t, kid: kid, key: cryptosigner.Opaque(key)}, auth: header}
}

// push sends a SET about stream with events, issued at iat.
func (s *streamSETs) push(t *testing.T, stream string, iat time.Time, events map[string]any) {
	t.Helper()
	c := setClaims(s.p.first.Issuer, s.p.second.Issuer, map[string]any{"format": "opaque", "id": stream}, events)
	c["iat"] = iat.Unix()
	if status, code := push(t, s.p.second.URL+receiver.PathReceive+s.tx.ID, s.auth, "application/secevent+jwt", s.sign.sign(ssf.TokenType, c)); status != http.StatusAccepted {
		t.Fatalf("push: %d %s, want 202", status, code)
	}
}

func (s *streamSETs) get(t *testing.T) receiver.Transmitter {
	t.Helper()
	got, err := s.p.second.Srv.Signals.Store.Get(s.p.second.Ctx, s.tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A verification event marks the transmitter verified only when it
// echoes the state we wait for, about our stream; any other is accepted
// and ignored.
func TestReceiver_VerificationState(t *testing.T) {
	s := newStreamSETs(t)
	verification := func(state string) map[string]any {
		return map[string]any{ssf.EventVerification: map[string]any{"state": state}}
	}
	// No request in flight: nothing to match.
	s.push(t, s.tx.StreamID, time.Now(), verification("anything"))
	h := sha256.Sum256([]byte("the-state"))
	if _, err := s.p.second.DB.Pool.Exec(s.p.second.Ctx, `UPDATE ssf_transmitters SET verify_state_hash = $2, verify_requested_at = now() WHERE id = $1`,
		s.tx.ID, h[:]); err != nil {
		t.Fatal(err)
	}
	s.push(t, s.tx.StreamID, time.Now(), verification("the-stat"))
	s.push(t, s.tx.StreamID, time.Now(), map[string]any{ssf.EventVerification: map[string]any{}})
	s.push(t, "another-stream", time.Now(), verification("the-state"))
	if got := s.get(t); !got.VerifiedAt.IsZero() {
		t.Fatalf("verified by a wrong state or stream: %+v", got)
	}
	if n := dbtest.Value[int](t, s.p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'ssf.signal_received' AND details ? 'ignored'`); n != 4 {
		t.Errorf("%d ignored verification events in the audit log, want 4", n)
	}
	s.push(t, s.tx.StreamID, time.Now(), verification("the-state"))
	got := s.get(t)
	if got.VerifiedAt.IsZero() {
		t.Fatal("the right state did not verify")
	}
	// The state is spent: another SET echoing it verifies nothing anew.
	s.push(t, s.tx.StreamID, time.Now(), verification("the-state"))
	if again := s.get(t); !again.VerifiedAt.Equal(got.VerifiedAt) {
		t.Errorf("a spent state verified again: %v, then %v", got.VerifiedAt, again.VerifiedAt)
	}
	if n := dbtest.Value[int](t, s.p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke'`); n != 0 {
		t.Errorf("%d revocations, want none", n)
	}
}

// A stream-updated records what the transmitter says of our stream, the
// latest by iat; it never ends a session.
func TestReceiver_StreamUpdated(t *testing.T) {
	s := newStreamSETs(t)
	updated := func(status, reason string) map[string]any {
		return map[string]any{ssf.EventStreamUpdated: map[string]any{"status": status, "reason": reason}}
	}
	now := time.Now().Truncate(time.Second)
	s.push(t, s.tx.StreamID, now, updated("paused", "maintenance"))
	got := s.get(t)
	if got.StreamStatus != "paused" || got.StreamReason != "maintenance" || !got.StreamUpdated.Equal(now) {
		t.Fatalf("after paused: %q %q %v", got.StreamStatus, got.StreamReason, got.StreamUpdated)
	}
	for _, c := range []struct {
		name, stream string
		iat          time.Time
		events       map[string]any
	}{
		{"older", s.tx.StreamID, now.Add(-time.Minute), updated("enabled", "")},
		{"another stream", "another-stream", now.Add(time.Second), updated("disabled", "gone")},
		{"unknown status", s.tx.StreamID, now.Add(time.Second), updated("sleeping", "")},
		{"no status", s.tx.StreamID, now.Add(time.Second), map[string]any{ssf.EventStreamUpdated: "paused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.push(t, c.stream, c.iat, c.events)
			if got := s.get(t); got.StreamStatus != "paused" || got.StreamReason != "maintenance" {
				t.Errorf("recorded %q %q, want paused maintenance still", got.StreamStatus, got.StreamReason)
			}
		})
	}
	s.push(t, s.tx.StreamID, now.Add(time.Second), updated("enabled", ""))
	if got := s.get(t); got.StreamStatus != "enabled" || got.StreamReason != "" {
		t.Errorf("after enabled: %q %q", got.StreamStatus, got.StreamReason)
	}
	if n := liveSessions(t, s.p.second, s.p.annSecond); n != 1 {
		t.Errorf("%d live sessions of ann, want 1: a stream-updated revokes nothing", n)
	}
	if n := dbtest.Value[int](t, s.p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke'`); n != 0 {
		t.Errorf("%d revocations, want none", n)
	}
}

// A verification request the transmitter refuses leaves what was there;
// a transmitter whose stream was made by hand has none to verify.
func TestReceiver_VerifyRefused(t *testing.T) {
	p := newPair(t)
	store := p.second.Srv.Signals.Store
	manual, _, err := store.Add(p.second.Ctx, receiver.New{Issuer: "https://manual.example.com", Subjects: []string{receiver.SubjectsEmail}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RequestVerification(p.second.Ctx, manual.ID); !errors.Is(err, receiver.ErrInvalid) {
		t.Errorf("verify a stream made by hand: %v, want ErrInvalid", err)
	}
	if err := store.RequestVerification(p.second.Ctx, "tx_nobody"); !errors.Is(err, receiver.ErrNotFound) {
		t.Errorf("verify an unknown transmitter: %v, want ErrNotFound", err)
	}
	tx, _, err := store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer, Subjects: []string{receiver.SubjectsEmail},
		Token: p.stream.token, CreateStream: receiver.DeliveryPush})
	if err != nil {
		t.Fatal(err)
	}
	// The stream is gone at first: its verification endpoint answers 404.
	p.stream.must(http.StatusNoContent, "DELETE", "/ssf/streams?stream_id="+tx.StreamID, nil)
	if err := store.RequestVerification(p.second.Ctx, tx.ID); !errors.Is(err, receiver.ErrTransmitter) {
		t.Fatalf("verify a deleted stream: %v, want ErrTransmitter", err)
	}
	if got, _ := store.Get(p.second.Ctx, tx.ID); !got.VerifyRequested.IsZero() {
		t.Errorf("a refused request is recorded: %v", got.VerifyRequested)
	}
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM ssf_transmitters WHERE verify_state_hash IS NOT NULL`); n != 0 {
		t.Error("a refused request's state is awaited")
	}
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'ssf.transmitter_verify'`); n != 0 {
		t.Errorf("%d audit entries for a refused request", n)
	}
	// Deleting a stream already gone is not an error: removal goes on.
	if err := store.DeleteStream(p.second.Ctx, tx); err != nil {
		t.Errorf("DeleteStream of a stream gone: %v", err)
	}
}

// An administrator of first pausing and enabling our stream there is
// heard at second as stream-updated events, by the stream's own delivery
// (a paused push stream still carries them): second records the status
// and reason first gave, and ends nobody's session.
func TestReceiver_HearsTransmitterStatus(t *testing.T) {
	p := newPair(t)
	store := p.second.Srv.Signals.Store
	tx, _, err := store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer, Subjects: []string{receiver.SubjectsEmail},
		Token: p.stream.token, CreateStream: receiver.DeliveryPush})
	if err != nil {
		t.Fatal(err)
	}
	ops := tokenClient(t, p.first, "ops", func(c *clients.Client) { c.AdminServiceAccount = true }, "admin")
	for _, c := range []struct{ status, reason string }{{"paused", "maintenance until 18:00"}, {"enabled", ""}} {
		ops.must(http.StatusOK, "POST", "/admin/api/signals/streams/"+tx.StreamID+"/status",
			map[string]any{"status": c.status, "reason": c.reason})
		waitFor(t, "second did not record the stream's status "+c.status, func() bool {
			got, err := store.Get(p.second.Ctx, tx.ID)
			return err == nil && got.StreamStatus == c.status
		})
		if got, _ := store.Get(p.second.Ctx, tx.ID); got.StreamReason != c.reason {
			t.Errorf("recorded reason %q for %s, want %q", got.StreamReason, c.status, c.reason)
		}
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 1 {
		t.Errorf("%d live sessions of ann on second after stream-updated events, want 1", n)
	}
}
