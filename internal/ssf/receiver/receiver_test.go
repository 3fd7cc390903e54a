package receiver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/ssf/receiver"
)

const password = "correct horse battery staple 42"

// client calls a provider's JSON endpoints with a bearer token.
type client struct {
	t          *testing.T
	base       string
	id, secret string
	token      string
}

func (c *client) must(want int, method, path string, body any) map[string]any {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// tokenClient registers a client_credentials client of h with scopes and
// returns a caller holding its token.
func tokenClient(t *testing.T, h *servertest.Harness, id string, mutate func(*clients.Client), scopes ...string) *client {
	t.Helper()
	rp := h.NewRP(id, func(c *clients.Client) {
		c.Scopes = append(c.Scopes, scopes...)
		if mutate != nil {
			mutate(c)
		}
	})
	tok, err := (&clientcredentials.Config{ClientID: rp.ID, ClientSecret: rp.Secret, TokenURL: h.Issuer + "/oauth2/token",
		Scopes: scopes}).Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials token for %s: %v", id, err)
	}
	return &client{t: t, base: h.Issuer, id: rp.ID, secret: rp.Secret, token: tok.AccessToken}
}

// signIn signs email in to app on a new browser.
func signIn(t testing.TB, app *servertest.RP, email string) {
	t.Helper()
	br := servertest.NewBrowser(t)
	a := app.AuthURL()
	p := br.SignIn(a.URL, email, password)
	app.Exchange(t, app.Code(t, p, a), a)
}

func liveSessions(t *testing.T, h *servertest.Harness, userID string) int {
	t.Helper()
	return dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM sso_sessions WHERE user_id = $1::uuid AND revoked_at IS NULL`, userID)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pair is two providers on two databases: first transmits, second
// receives. Ann has an account on both; on second she is signed in to an
// app that takes back-channel logout.
type pair struct {
	first, second *servertest.Harness
	annFirst      string
	annSecond     string
	logouts       *servertest.Receiver
	app           *servertest.RP
	stream        *client // second's receiver client at first
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{first: servertest.New(t)}
	p.second = servertest.New(t, func(c *server.Config) { c.SignalPollInterval = 100 * time.Millisecond })
	p.annFirst = p.first.CreateUser("ann@example.com", password).ID
	p.annSecond = p.second.CreateUser("ann@example.com", password).ID
	signIn(t, p.first.NewRP("mail"), "ann@example.com")
	p.logouts = p.second.NewReceiver("app")
	p.app = p.second.NewRP("app", func(c *clients.Client) { c.BackchannelLogoutURI = p.logouts.URL })
	signIn(t, p.app, "ann@example.com")
	p.stream = tokenClient(t, p.first, "second", nil, ssf.Scope)
	return p
}

// adminRevokeAll ends every session of ann on first through its admin API.
func (p *pair) adminRevokeAll(t *testing.T) {
	t.Helper()
	ops := tokenClient(t, p.first, "ops", func(c *clients.Client) { c.AdminServiceAccount = true }, "admin")
	if res := ops.must(http.StatusOK, "DELETE", "/admin/api/users/"+p.annFirst+"/sessions", nil); res["sessions"] != float64(1) {
		t.Fatalf("revoke-all on first = %v, want 1 session", res)
	}
}

// checkEnded waits until ann's sessions on second have ended and its app
// has a logout token for her.
func (p *pair) checkEnded(t *testing.T) {
	t.Helper()
	waitFor(t, "ann's session on second still live", func() bool { return liveSessions(t, p.second, p.annSecond) == 0 })
	waitFor(t, "second's app got no back-channel logout", func() bool { return len(p.logouts.Tokens()) >= 1 })
	if n := len(p.logouts.Tokens()); n != 1 {
		t.Errorf("second's app got %d logout tokens, want 1", n)
	}
	if sub := p.logouts.Tokens()[0].Subject; sub != p.annSecond {
		t.Errorf("logout token sub %q, want ann on second %q", sub, p.annSecond)
	}
	reason := dbtest.Value[string](t, p.second.DB.Pool, `SELECT revoked_reason FROM sso_sessions WHERE user_id = $1::uuid`, p.annSecond)
	if reason != "signal_received" {
		t.Errorf("revoked_reason %q, want signal_received", reason)
	}
	actor := dbtest.Value[string](t, p.second.DB.Pool, `SELECT actor FROM audit_log WHERE action = 'sessions.revoke' AND target = $1`, p.annSecond)
	if actor != "transmitter:"+p.first.Issuer {
		t.Errorf("revocation actor %q, want transmitter:%s", actor, p.first.Issuer)
	}
}

func TestReceiver_Push(t *testing.T) {
	p := newPair(t)
	tx, header, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer,
		Audience: "second", Subjects: []string{receiver.SubjectsEmail}})
	if err != nil {
		t.Fatal(err)
	}
	id := p.stream.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": p.second.URL + receiver.PathReceive + tx.ID,
			"authorization_header": header},
		"events_requested": []string{ssf.EventSessionRevoked, ssf.EventCredentialChange, ssf.EventAccountDisabled},
	})["stream_id"].(string)
	p.stream.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})

	p.adminRevokeAll(t)
	p.checkEnded(t)
	// The push was accepted (202): first's row is delivered, not failed.
	waitFor(t, "first's push not delivered", func() bool {
		return dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1 AND delivered_at IS NOT NULL`, ssf.KindPush) == 1
	})
}

func TestReceiver_Poll(t *testing.T) {
	for _, c := range []struct {
		name string
		cred func(p *pair) receiver.New
	}{
		{"bearer token", func(p *pair) receiver.New { return receiver.New{Token: p.stream.token} }},
		{"client credentials", func(p *pair) receiver.New {
			return receiver.New{ClientID: p.stream.id, ClientSecret: p.stream.secret, TokenURL: p.first.Issuer + "/oauth2/token", TokenScope: ssf.Scope}
		}},
	} {
		t.Run(c.name, func(t *testing.T) { testPoll(t, c.cred) })
	}
}

func testPoll(t *testing.T, cred func(p *pair) receiver.New) {
	p := newPair(t)
	id := p.stream.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}, "events_requested": []string{ssf.EventSessionRevoked}})["stream_id"].(string)
	p.stream.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	// A second instance of second, on the same database, polls too: the
	// row lock keeps them from processing one batch twice.
	servertest.NewInstance(t, p.second.DB, func(c *server.Config) {
		c.Issuer, c.SignalPollInterval = p.second.Issuer, 100*time.Millisecond
	})
	n := cred(p)
	n.Issuer, n.Audience, n.Subjects, n.PollURL = p.first.Issuer, "second", []string{receiver.SubjectsEmail}, p.first.Issuer+"/ssf/poll"
	if _, _, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, n); err != nil {
		t.Fatal(err)
	}

	p.adminRevokeAll(t)
	p.checkEnded(t)
	// The event is acknowledged by the poll after the one that fetched it.
	waitFor(t, "first's poll event not acknowledged", func() bool {
		return dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1 AND delivered_at IS NOT NULL`, ssf.KindPoll) == 1
	})
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke'`); n != 1 {
		t.Errorf("%d revocations on second, want 1 (the batch processed once)", n)
	}
}

// signer makes SETs as first would, or with what a forger has.
type signer struct {
	t      *testing.T
	kid    string
	key    any
	issuer string
}

func (s signer) sign(typ string, claims map[string]any) string {
	s.t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := js.Sign(payload)
	if err != nil {
		s.t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func setClaims(iss, aud string, sub map[string]any, events map[string]any) map[string]any {
	return map[string]any{"iss": iss, "aud": aud, "iat": time.Now().Unix(), "jti": rand.Text(), "sub_id": sub, "events": events}
}

func ann() map[string]any { return map[string]any{"format": "email", "email": "ANN@example.com"} }

func revoked() map[string]any {
	return map[string]any{ssf.EventSessionRevoked: map[string]any{"event_timestamp": time.Now().Unix()}}
}

// push POSTs raw to second's endpoint for tx and returns the status and
// the refusal's err.
func push(t *testing.T, url, authorization, contentType, raw string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(raw))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var refusal struct {
		Err         string `json:"err"`
		Description string `json:"description"`
	}
	if resp.StatusCode == http.StatusBadRequest {
		if err := json.NewDecoder(resp.Body).Decode(&refusal); err != nil || refusal.Description == "" {
			t.Errorf("400 without err and description (RFC 8935 §2.3): %v", err)
		}
	}
	return resp.StatusCode, refusal.Err
}

func TestReceiver_Refused(t *testing.T) {
	p := newPair(t)
	tx, header, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer,
		Events: []string{"session-revoked", "device-compliance-change"}, Subjects: []string{receiver.SubjectsEmail}})
	if err != nil {
		t.Fatal(err)
	}
	url := p.second.URL + receiver.PathReceive + tx.ID
	kid, key, err := p.first.Srv.Keys.Signer("RS256")
	if err != nil {
		t.Fatal(err)
	}
	first := signer{t: t, kid: kid, key: cryptosigner.Opaque(key), issuer: p.first.Issuer}
	forged, _ := rsa.GenerateKey(rand.Reader, 2048)
	forger := signer{t: t, kid: kid, key: forged, issuer: p.first.Issuer}
	iss, aud := p.first.Issuer, p.second.Issuer
	b64 := base64.RawURLEncoding.EncodeToString
	unsigned := func(c map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "secevent+jwt"})
		b, _ := json.Marshal(c)
		return b64(h) + "." + b64(b) + "."
	}
	old := setClaims(iss, aud, ann(), revoked())
	old["iat"] = time.Now().Add(-8 * 24 * time.Hour).Unix()
	future := setClaims(iss, aud, ann(), revoked())
	future["iat"] = time.Now().Add(time.Hour).Unix()
	noJTI := setClaims(iss, aud, ann(), revoked())
	delete(noJTI, "jti")
	const ct = "application/secevent+jwt"

	cases := []struct {
		name          string
		url, auth, ct string
		raw           string
		status        int
		err           string
	}{
		{"wrong authorization", url, "Bearer not-it", ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked())), 401, ""},
		{"no authorization", url, "", ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked())), 401, ""},
		{"unknown transmitter", p.second.URL + receiver.PathReceive + "tx_nobody", header, ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked())), 401, ""},
		{"wrong content type", url, header, "application/json", first.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked())), 400, "invalid_request"},
		{"unsigned", url, header, ct, unsigned(setClaims(iss, aud, ann(), revoked())), 400, "invalid_request"},
		{"wrongly signed", url, header, ct, forger.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked())), 400, "invalid_key"},
		{"not a SET (typ JWT)", url, header, ct, first.sign("JWT", setClaims(iss, aud, ann(), revoked())), 400, "invalid_request"},
		{"wrong audience", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, "https://elsewhere.example.com", ann(), revoked())), 400, "invalid_audience"},
		{"wrong issuer", url, header, ct, first.sign(ssf.TokenType, setClaims("https://evil.example.com", aud, ann(), revoked())), 400, "invalid_issuer"},
		{"iat too old", url, header, ct, first.sign(ssf.TokenType, old), 400, "invalid_request"},
		{"iat in the future", url, header, ct, first.sign(ssf.TokenType, future), 400, "invalid_request"},
		{"no jti", url, header, ct, first.sign(ssf.TokenType, noJTI), 400, "invalid_request"},
		{"garbage", url, header, ct, "not.a.jwt", 400, "invalid_request"},
		// Accepted (202) and recorded, never acted on.
		{"unknown subject", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud,
			map[string]any{"format": "email", "email": "nobody@example.com"}, revoked())), 202, ""},
		{"iss_sub not mapped for this transmitter", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud,
			map[string]any{"format": "iss_sub", "iss": p.second.Issuer, "sub": p.annSecond}, revoked())), 202, ""},
		{"event not allowed", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(),
			map[string]any{ssf.EventAccountDisabled: map[string]any{}})), 202, ""},
		{"unknown event", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(),
			map[string]any{"https://example.com/event/other": map[string]any{}})), 202, ""},
		{"device still compliant", url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(),
			map[string]any{receiver.EventDeviceComplianceChange: map[string]any{"previous_status": "not-compliant", "current_status": "compliant"}})), 202, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, code := push(t, c.url, c.auth, c.ct, c.raw)
			if status != c.status || code != c.err {
				t.Errorf("status %d err %q, want %d %q", status, code, c.status, c.err)
			}
			if n := liveSessions(t, p.second, p.annSecond); n != 1 {
				t.Fatalf("%d live sessions of ann on second, want 1: nothing revoked", n)
			}
		})
	}
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'ssf.signal_received' AND details ? 'ignored'`); n != 5 {
		t.Errorf("%d ignored SETs in the audit log, want the 5 accepted ones", n)
	}
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke'`); n != 0 {
		t.Errorf("%d revocations on second, want none", n)
	}

	// A valid SET acts; the same SET again (its jti) is accepted and
	// does nothing.
	valid := first.sign(ssf.TokenType, setClaims(iss, aud, ann(), revoked()))
	if status, code := push(t, url, header, ct, valid); status != 202 {
		t.Fatalf("valid SET: %d %s", status, code)
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 0 {
		t.Fatalf("after a valid session-revoked, %d live sessions", n)
	}
	signIn(t, p.app, "ann@example.com")
	if status, code := push(t, url, header, ct, valid); status != 202 {
		t.Fatalf("replayed SET: %d %s, want 202 (already accepted)", status, code)
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 1 {
		t.Fatalf("a replayed jti ended the new session: %d live", n)
	}
	// A device out of compliance ends them.
	if status, code := push(t, url, header, ct, first.sign(ssf.TokenType, setClaims(iss, aud, ann(),
		map[string]any{receiver.EventDeviceComplianceChange: map[string]any{"previous_status": "compliant", "current_status": "not-compliant"}}))); status != 202 {
		t.Fatalf("device-compliance-change: %d %s", status, code)
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 0 {
		t.Fatalf("after not-compliant, %d live sessions", n)
	}
}

// A SET the receiver refuses while polling is reported to the
// transmitter as a setErr (RFC 8936 §2.4), and nothing is revoked.
func TestReceiver_PollReportsRefusals(t *testing.T) {
	p := newPair(t)
	id := p.stream.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}, "events_requested": []string{ssf.EventSessionRevoked}})["stream_id"].(string)
	p.stream.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	// No --audience: first addresses its SETs to the client id "second",
	// which is not our issuer.
	tx, _, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer,
		Subjects: []string{receiver.SubjectsEmail}, PollURL: p.first.Issuer + "/ssf/poll", Token: p.stream.token})
	if err != nil {
		t.Fatal(err)
	}
	p.adminRevokeAll(t)
	waitFor(t, "first has not recorded the receiver's setErr", func() bool {
		return dbtest.Value[int](t, p.first.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1 AND last_error LIKE '%invalid_audience%'`, ssf.KindPoll) == 1
	})
	if n := liveSessions(t, p.second, p.annSecond); n != 1 {
		t.Errorf("%d live sessions on second, want 1: a refused SET revokes nothing", n)
	}
	if n := len(p.logouts.Tokens()); n != 0 {
		t.Errorf("second's app got %d logout tokens, want none", n)
	}
	got, err := p.second.Srv.Signals.Store.Get(p.second.Ctx, tx.ID)
	if err != nil || got.LastPoll.IsZero() || got.LastError != "" {
		t.Errorf("transmitter after polls: %+v, %v; want a last poll and no error of its own", got, err)
	}
}

// An iss_sub with our issuer names our user by id; a credential-change
// ends the sessions; the jti is forgotten once no SET that old is
// accepted.
func TestReceiver_IssSubAndForget(t *testing.T) {
	p := newPair(t)
	tx, header, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer,
		Subjects: []string{receiver.SubjectsIssSub}})
	if err != nil {
		t.Fatal(err)
	}
	kid, key, _ := p.first.Srv.Keys.Signer("RS256")
	first := signer{t: t, kid: kid, key: cryptosigner.Opaque(key)}
	raw := first.sign(ssf.TokenType, setClaims(p.first.Issuer, p.second.Issuer,
		map[string]any{"format": "iss_sub", "iss": p.second.Issuer, "sub": p.annSecond},
		map[string]any{ssf.EventCredentialChange: map[string]any{"credential_type": "password", "change_type": "update"}}))
	if status, code := push(t, p.second.URL+receiver.PathReceive+tx.ID, header, "application/secevent+jwt", raw); status != 202 {
		t.Fatalf("credential-change: %d %s", status, code)
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 0 {
		t.Fatalf("%d live sessions after credential-change, want 0", n)
	}
	waitFor(t, "second's app got no back-channel logout", func() bool { return len(p.logouts.Tokens()) == 1 })

	later := *p.second.Srv.Signals
	later.Now = func() time.Time { return time.Now().Add(receiver.MaxAge) }
	if n, err := later.Forget(p.second.Ctx); err != nil || n != 0 {
		t.Fatalf("Forget within the window: %d, %v; want 0", n, err)
	}
	later.Now = func() time.Time { return time.Now().Add(receiver.Remember + time.Minute) }
	if n, err := later.Forget(p.second.Ctx); err != nil || n != 1 {
		t.Fatalf("Forget after the window: %d, %v; want 1", n, err)
	}
}

// The same SET pushed to two instances of the receiver at once is acted
// on once: the jti is claimed in the database, not in an instance.
func TestReceiver_ReplayAcrossInstances(t *testing.T) {
	p := newPair(t)
	other := servertest.NewInstance(t, p.second.DB, func(c *server.Config) { c.Issuer = p.second.Issuer })
	tx, header, err := p.second.Srv.Signals.Store.Add(p.second.Ctx, receiver.New{Issuer: p.first.Issuer,
		Subjects: []string{receiver.SubjectsEmail}})
	if err != nil {
		t.Fatal(err)
	}
	kid, key, _ := p.first.Srv.Keys.Signer("RS256")
	raw := signer{t: t, kid: kid, key: cryptosigner.Opaque(key)}.sign(ssf.TokenType,
		setClaims(p.first.Issuer, p.second.Issuer, ann(), revoked()))
	statuses := make(chan int, 4)
	for range 2 {
		for _, base := range []string{p.second.URL, other.URL} {
			go func() {
				s, _ := push(t, base+receiver.PathReceive+tx.ID, header, "application/secevent+jwt", raw)
				statuses <- s
			}()
		}
	}
	for range 4 {
		if s := <-statuses; s != http.StatusAccepted {
			t.Errorf("push answered %d, want 202 (accepted, or already accepted)", s)
		}
	}
	if n := liveSessions(t, p.second, p.annSecond); n != 0 {
		t.Errorf("%d live sessions, want 0", n)
	}
	if n := dbtest.Value[int](t, p.second.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'ssf.signal_received'`); n != 1 {
		t.Errorf("the SET was acted on %d times, want once", n)
	}
}
