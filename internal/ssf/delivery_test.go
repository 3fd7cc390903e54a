package ssf_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/sgnl-ai/caep.dev/secevent/pkg/schemes/caep"
	ssfevents "github.com/sgnl-ai/caep.dev/secevent/pkg/schemes/ssf"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/subject"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/token"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/users"
)

const password = "correct horse battery staple 42"

// pushReceiver is an RFC 8935 endpoint written in the test: it verifies
// every SET with the independent library against the provider's JWKS and
// answers 202, or, while fail holds statuses, those first.
type pushReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	fail []int
	sets []*token.SecEvent
	raw  []string
	auth []string
}

func newPushReceiver(t *testing.T, h *servertest.Harness, audience string) *pushReceiver {
	pr := &pushReceiver{t: t}
	pr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if len(pr.fail) > 0 {
			status := pr.fail[0]
			pr.fail = pr.fail[1:]
			w.WriteHeader(status)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/secevent+jwt" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"err":"invalid_request","description":"Content-Type `+ct+`"}`)
			return
		}
		set, err := parseSET(string(body), h.Issuer+"/.well-known/jwks.json", h.Issuer, audience)
		if err != nil {
			t.Errorf("push receiver: SET does not verify: %v", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"err":"invalid_key","description":"does not verify"}`)
			return
		}
		pr.sets = append(pr.sets, set)
		pr.raw = append(pr.raw, string(body))
		pr.auth = append(pr.auth, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(pr.srv.Close)
	return pr
}

// wait returns the SETs received once there are n, failing after a while.
func (pr *pushReceiver) wait(n int) []*token.SecEvent {
	pr.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pr.mu.Lock()
		got := append([]*token.SecEvent(nil), pr.sets...)
		pr.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			pr.t.Fatalf("push receiver has %d SETs, want %d", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (pr *pushReceiver) count() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.sets)
}

// person is a user signed in to an app on two devices.
func signedInTwice(t *testing.T, h *servertest.Harness, email string) users.User {
	t.Helper()
	u := h.CreateUser(email, password)
	app := h.NewRP("app-"+u.ID[:8], func(c *clients.Client) {})
	for range 2 {
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		p := br.SignIn(a.URL, email, password)
		app.Exchange(t, app.Code(t, p, a), a)
	}
	return u
}

// adminClient is an admin service account calling the admin API.
func adminClient(t *testing.T, h *servertest.Harness, id string) *receiver {
	t.Helper()
	rp := h.NewRP(id, func(c *clients.Client) { c.AdminServiceAccount = true })
	tok, err := (&clientcredentials.Config{ClientID: rp.ID, ClientSecret: rp.Secret, TokenURL: h.Issuer + "/oauth2/token",
		Scopes: []string{"admin"}}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &receiver{t: t, h: h, token: tok.AccessToken}
}

// adminRevoke revokes every session of userID through the admin API, as
// an admin service account.
func adminRevoke(t *testing.T, h *servertest.Harness, userID string) {
	t.Helper()
	res := adminClient(t, h, "ops-"+userID[:8]).must(http.StatusOK, "DELETE", "/admin/api/users/"+userID+"/sessions", nil)
	if res["sessions"] != float64(2) {
		t.Fatalf("revoke-all = %v, want 2 sessions", res)
	}
}

func checkSessionRevoked(t *testing.T, set *token.SecEvent, email string) {
	t.Helper()
	e, ok := set.Event.(*caep.SessionRevokedEvent)
	if !ok {
		t.Fatalf("event %T, want session-revoked", set.Event)
	}
	if who, _ := e.Metadata.GetInitiatingEntity(); who != caep.InitiatingEntityAdmin {
		t.Errorf("initiating_entity %v, want admin", who)
	}
	es, ok := set.Subject.(*subject.EmailSubject)
	if !ok || es.Email() != email {
		t.Errorf("sub_id %#v, want the email the receiver added, %s", set.Subject, email)
	}
}

func TestPush_SessionRevoked(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	pr := newPushReceiver(t, h, "receiver")
	u := signedInTwice(t, h, "ann@example.com")
	bystander := signedInTwice(t, h, "bob@example.com")

	st := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery":         map[string]any{"method": ssf.DeliveryPush, "endpoint_url": pr.srv.URL, "authorization_header": "Bearer for-the-receiver"},
		"events_requested": []string{ssf.EventSessionRevoked},
	})
	id := st["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	rc.must(http.StatusNoContent, "POST", "/ssf/subjects:remove", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": bystander.Email}})

	// Verification echoes state; the first attempt meets a 503 and is
	// retried.
	pr.mu.Lock()
	pr.fail = []int{http.StatusServiceUnavailable}
	pr.mu.Unlock()
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "state-1234"})
	got := pr.wait(1)
	v, ok := got[0].Event.(*ssfevents.VerificationEvent)
	if !ok {
		t.Fatalf("first SET is %T, want the verification event", got[0].Event)
	}
	if s, _ := v.GetState(); s != "state-1234" {
		t.Errorf("verification state %q, want state-1234", s)
	}
	if os, ok := got[0].Subject.(*subject.OpaqueSubject); !ok || os.ID() != id {
		t.Errorf("verification sub_id %#v, want the stream (opaque %s)", got[0].Subject, id)
	}

	adminRevoke(t, h, u.ID)
	got = pr.wait(3)
	jtis := map[string]bool{}
	for _, set := range got[1:] {
		checkSessionRevoked(t, set, "ann@example.com")
		jtis[set.ID] = true
	}
	if len(jtis) != 2 {
		t.Errorf("%d distinct jti among the session-revoked SETs, want 2 (one per session)", len(jtis))
	}
	pr.mu.Lock()
	for _, a := range pr.auth {
		if a != "Bearer for-the-receiver" {
			t.Errorf("push carried Authorization %q, want the stream's", a)
		}
	}
	pr.mu.Unlock()

	// A removed subject gets nothing: no event is even queued (queueing
	// is part of the revocation).
	adminRevoke(t, h, bystander.ID)
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1 AND subject = $2`,
		ssf.KindPush, bystander.ID); n != 0 {
		t.Errorf("%d events queued about a removed subject", n)
	}
	// Every row delivered, so no attempt is on its way: three SETs
	// received, none twice (the verification's first attempt met the 503).
	for _, r := range pushRows(t, h) {
		if !r.Delivered {
			t.Errorf("push row %+v: want delivered", r)
		}
	}
	if n := pr.count(); n != 3 {
		t.Errorf("the receiver has %d SETs, want 3", n)
	}
}

// poll asks for events as RFC 8936 says and returns the SETs by jti and
// moreAvailable.
func (rc *receiver) poll(req map[string]any) (map[string]string, bool) {
	rc.t.Helper()
	out := rc.must(http.StatusOK, "POST", "/ssf/poll", req)
	sets := map[string]string{}
	for jti, raw := range out["sets"].(map[string]any) {
		sets[jti] = raw.(string)
	}
	more, _ := out["moreAvailable"].(bool)
	return sets, more
}

func TestPoll_SessionRevoked(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	u := signedInTwice(t, h, "ann@example.com")
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}})["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})

	if sets, more := rc.poll(map[string]any{"returnImmediately": true}); len(sets) != 0 || more {
		t.Fatalf("poll before any event: %d SETs, moreAvailable %v; want none", len(sets), more)
	}
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "poll-state"})
	adminRevoke(t, h, u.ID)

	jwks := h.Issuer + "/.well-known/jwks.json"
	sets, more := rc.poll(map[string]any{"maxEvents": 1, "returnImmediately": true})
	if len(sets) != 1 || !more {
		t.Fatalf("poll with maxEvents 1: %d SETs, moreAvailable %v; want 1 and true", len(sets), more)
	}
	var first string
	for jti, raw := range sets {
		first = jti
		set := verifySET(t, raw, jwks, h.Issuer, "receiver")
		v, ok := set.Event.(*ssfevents.VerificationEvent)
		if !ok {
			t.Fatalf("first event %T, want the verification (queued first)", set.Event)
		}
		if s, _ := v.GetState(); s != "poll-state" || set.ID != jti {
			t.Errorf("verification state %q jti %q, want poll-state under its key %q", s, set.ID, jti)
		}
	}

	// Acknowledged events go; unacknowledged ones come again, with the
	// same jti.
	sets, more = rc.poll(map[string]any{"ack": []string{first}, "returnImmediately": true})
	if len(sets) != 2 || more {
		t.Fatalf("poll after the ack: %d SETs, moreAvailable %v; want the 2 session-revoked", len(sets), more)
	}
	for _, raw := range sets {
		checkSessionRevoked(t, verifySET(t, raw, jwks, h.Issuer, "receiver"), "ann@example.com")
	}
	again, _ := rc.poll(map[string]any{"returnImmediately": true})
	for jti := range sets {
		if _, ok := again[jti]; !ok {
			t.Errorf("unacknowledged %s not offered again", jti)
		}
	}
	var acks []string
	var bad string
	for jti := range sets {
		if bad == "" {
			bad = jti
			continue
		}
		acks = append(acks, jti)
	}
	sets, _ = rc.poll(map[string]any{"ack": acks, "setErrs": map[string]any{bad: map[string]string{
		"err": "invalid_audience", "description": "not for us"}}, "returnImmediately": true})
	if len(sets) != 0 {
		t.Errorf("after acking one and reporting an error on the other: %d SETs, want none", len(sets))
	}
	var lastErr string
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT last_error FROM outbox WHERE payload->'set'->>'jti' = $1`, bad).Scan(&lastErr); err != nil {
		t.Fatal(err)
	}
	if lastErr == "" {
		t.Error("the receiver's setErr is not recorded")
	}

	// A long poll returns as soon as an event arrives.
	done := make(chan map[string]string)
	go func() {
		s, _ := rc.poll(map[string]any{"returnImmediately": false})
		done <- s
	}()
	time.Sleep(300 * time.Millisecond)
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "late"})
	select {
	case s := <-done:
		if len(s) != 1 {
			t.Errorf("long poll returned %d SETs, want the verification", len(s))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not return when the event arrived")
	}
}

func TestPoll_Refused(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	push := newReceiver(t, h, "pusher", ssf.Scope)
	noScope := newReceiver(t, h, "no-scope")
	push.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": pushEndpoint(t)}})
	for _, tt := range []struct {
		name   string
		rc     *receiver
		body   any
		status int
	}{
		{"no scope", noScope, map[string]any{}, 403},
		{"no stream", rc, map[string]any{"returnImmediately": true}, 404},
		{"push stream", push, map[string]any{"returnImmediately": true}, 400},
		{"negative maxEvents", push, map[string]any{"maxEvents": -1}, 400},
		{"maxEvents not a number", push, map[string]any{"maxEvents": "ten"}, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, out := tt.rc.call("POST", "/ssf/poll", tt.body); status != tt.status {
				t.Errorf("status %d, want %d: %v", status, tt.status, out)
			}
		})
	}
}

// TestPush_PausedStreamHoldsEvents: pausing holds the events waiting, an
// event queued while paused is held after one attempt, and no held row is
// attempted again (its next attempt is never) until enabling releases
// them all.
func TestPush_PausedStreamHoldsEvents(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	pr := newPushReceiver(t, h, "receiver")
	u := signedInTwice(t, h, "ann@example.com")
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": pr.srv.URL}})["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})

	h.StopBackground()
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "before the pause"})
	rc.must(http.StatusOK, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "paused"})
	if rows := pushRows(t, h); len(rows) != 1 || !rows[0].Held || rows[0].Attempts != 0 {
		t.Fatalf("after the pause: %+v, want the waiting event held, never attempted", rows)
	}
	h.StartBackground()
	adminRevoke(t, h, u.ID)
	waitRows(t, h, func(rows []pushRow) bool {
		for _, r := range rows[1:] {
			if r.Attempts != 1 || !r.Held || r.LastError != "held: the stream is paused" {
				return false
			}
		}
		return len(rows) == 3
	})
	for _, r := range pushRows(t, h) {
		if r.Delivered || !r.Held || r.Attempts > 1 {
			t.Errorf("row %+v: want held, at most one attempt", r)
		}
	}
	if n := pr.count(); n != 0 {
		t.Fatalf("a paused stream delivered %d SETs", n)
	}
	rc.must(http.StatusOK, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "enabled"})
	// Delivered in parallel, so in no particular order.
	verifications := 0
	for _, set := range pr.wait(3) {
		if _, ok := set.Event.(*ssfevents.VerificationEvent); ok {
			verifications++
			continue
		}
		checkSessionRevoked(t, set, "ann@example.com")
	}
	if verifications != 1 {
		t.Errorf("%d verification SETs, want the one queued before the pause", verifications)
	}
}

// TestPush_SurvivesRestart: events queued while no worker runs, and one
// that met a 503, are delivered once the background work starts again,
// each exactly once.
func TestPush_SurvivesRestart(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	pr := newPushReceiver(t, h, "receiver")
	u := signedInTwice(t, h, "ann@example.com")
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": pr.srv.URL}})["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})

	pr.mu.Lock()
	pr.fail = []int{http.StatusServiceUnavailable}
	pr.mu.Unlock()
	h.StopBackground()
	adminRevoke(t, h, u.ID)
	for _, r := range pushRows(t, h) {
		if r.Attempts != 0 {
			t.Fatalf("row %+v attempted with no worker running", r)
		}
	}
	h.StartBackground()
	got := pr.wait(2)
	// Every row delivered: no attempt can still be on its way, so the
	// count is final.
	waitRows(t, h, func(rows []pushRow) bool {
		for _, r := range rows {
			if !r.Delivered {
				return false
			}
		}
		return true
	})
	if n := pr.count(); n != 2 {
		t.Fatalf("%d SETs delivered, want 2: nothing lost, nothing doubled", n)
	}
	if got[0].ID == got[1].ID {
		t.Errorf("both SETs have jti %s", got[0].ID)
	}
}

// TestPoll_DisabledStreamDropsEvents: disabling a stream fails the events
// it held, so enabling it again does not deliver them; a paused one keeps
// them.
func TestPoll_DisabledStreamDropsEvents(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}})["stream_id"].(string)
	status := func(s string) {
		rc.must(http.StatusOK, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": s})
	}
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "kept"})
	status("paused")
	if sets, _ := rc.poll(map[string]any{"returnImmediately": true}); len(sets) != 0 {
		t.Fatalf("a paused stream returned %d SETs", len(sets))
	}
	status("enabled")
	sets, _ := rc.poll(map[string]any{"returnImmediately": true})
	if len(sets) != 1 {
		t.Fatalf("after the pause: %d SETs, want the one held", len(sets))
	}
	var held []string
	for jti := range sets {
		held = append(held, jti)
	}
	rc.must(http.StatusOK, "POST", "/ssf/poll", map[string]any{"ack": held, "returnImmediately": true})

	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "dropped"})
	status("disabled")
	status("enabled")
	if sets, _ := rc.poll(map[string]any{"returnImmediately": true}); len(sets) != 0 {
		t.Fatalf("after disabling: %d SETs, want none (dropped)", len(sets))
	}
	var lastErr string
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT last_error FROM outbox WHERE kind = $1 AND failed_at IS NOT NULL`, ssf.KindPoll).Scan(&lastErr); err != nil || lastErr != "the stream was disabled" {
		t.Errorf("the dropped event: %q %v, want failed because the stream was disabled", lastErr, err)
	}
}

// pushRow is one push event's outbox row.
type pushRow struct {
	ID        int64
	Subject   string
	Attempts  int
	Delivered bool
	LastError string
	Held      bool // waiting to be released, never due by itself
}

func pushRows(t *testing.T, h *servertest.Harness) []pushRow {
	t.Helper()
	rows, err := h.DB.Pool.Query(h.Ctx, `SELECT id, subject, attempts, delivered_at IS NOT NULL, last_error,
			next_attempt_at = 'infinity'
		FROM outbox WHERE kind = $1 ORDER BY id`, ssf.KindPush)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pushRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRows waits until ok holds for the push rows.
func waitRows(t *testing.T, h *servertest.Harness, ok func([]pushRow) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rows := pushRows(t, h)
		if ok(rows) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("push rows never reached the state awaited: %+v", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
