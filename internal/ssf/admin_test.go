package ssf_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	ssfevents "github.com/sgnl-ai/caep.dev/secevent/pkg/schemes/ssf"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/subject"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/token"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// streamUpdated returns the status and reason of a stream-updated SET
// about stream id, failing if it is anything else.
func streamUpdated(t *testing.T, set *token.SecEvent, id string) (string, string) {
	t.Helper()
	e, ok := set.Event.(*ssfevents.StreamUpdateEvent)
	if !ok {
		t.Fatalf("SET %T, want stream-updated", set.Event)
	}
	if os, ok := set.Subject.(*subject.OpaqueSubject); !ok || os.ID() != id {
		t.Errorf("stream-updated sub_id %#v, want the stream (opaque %s)", set.Subject, id)
	}
	reason, _ := e.GetReason()
	return string(e.GetStatus()), reason
}

// auditActions lists the actions of the audit log's ssf.* entries made by
// actor, oldest first.
func auditActions(t *testing.T, h *servertest.Harness, actor string) []string {
	t.Helper()
	entries, err := audit.List(h.Ctx, h.DB.Pool, audit.Query{Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; e.Actor == actor && strings.HasPrefix(e.Action, "ssf.") {
			out = append(out, e.Action)
		}
	}
	return out
}

func streamUpdatedRows(t *testing.T, h *servertest.Harness) int {
	t.Helper()
	return dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM outbox WHERE reason = $1`, ssf.EventStreamUpdated)
}

// TestAdminAPI_Streams: an administrator lists a stream, retries its
// failed events, pauses and enables it; the receiver is told of each
// change by a stream-updated event, delivered though the stream is
// paused, while the events a pause holds wait; every change is in the
// audit log with the administrator as actor, and a refused request
// changes nothing.
func TestAdminAPI_Streams(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	pr := newPushReceiver(t, h, "receiver")
	u := signedInTwice(t, h, "ann@example.com")
	ops := adminClient(t, h, "ops")
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": pr.srv.URL}})["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	path := "/admin/api/signals/streams/" + id

	// The receiver refuses the verification: failed, with its words.
	pr.mu.Lock()
	pr.fail = []int{http.StatusBadRequest}
	pr.mu.Unlock()
	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "s"})
	waitRows(t, h, func(rows []pushRow) bool { return len(rows) == 1 && rows[0].LastError == "HTTP 400" })
	list := ops.must(http.StatusOK, "GET", "/admin/api/signals/streams", nil)["streams"].([]any)
	if len(list) != 1 {
		t.Fatalf("streams = %v, want the one", list)
	}
	st := list[0].(map[string]any)
	if st["stream_id"] != id || st["client_id"] != "receiver" || st["status"] != "enabled" ||
		st["backlog"] != float64(0) || st["failed"] != float64(1) || st["last_error"] != "HTTP 400" {
		t.Errorf("listed stream = %v, want enabled, 1 failed with HTTP 400", st)
	}
	if got := ops.must(http.StatusOK, "GET", path, nil); got["stream_id"] != id || got["failed"] != float64(1) {
		t.Errorf("GET stream = %v", got)
	}

	// Refused, and nothing changes.
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"unknown stream", "GET", "/admin/api/signals/streams/nope", nil, http.StatusNotFound},
		{"retry an unknown stream", "POST", "/admin/api/signals/streams/nope/retry", nil, http.StatusNotFound},
		{"status of an unknown stream", "POST", "/admin/api/signals/streams/nope/status", map[string]any{"status": "paused"}, http.StatusNotFound},
		{"unknown status", "POST", path + "/status", map[string]any{"status": "asleep"}, http.StatusBadRequest},
		{"no status", "POST", path + "/status", map[string]any{"reason": "x"}, http.StatusBadRequest},
		{"not JSON", "POST", path + "/status", "paused", http.StatusBadRequest},
		{"unknown member", "POST", path + "/status", map[string]any{"status": "paused", "why": "x"}, http.StatusBadRequest},
		{"reason with NUL", "POST", path + "/status", map[string]any{"status": "paused", "reason": "a\x00b"}, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, out := ops.call(tt.method, tt.path, tt.body)
			m, _ := out.(map[string]any)
			if status != tt.status || m["error"] == nil || m["error_description"] == "" {
				t.Errorf("status %d %v, want %d with a JSON error", status, out, tt.status)
			}
		})
	}
	if n := streamUpdatedRows(t, h); n != 0 {
		t.Fatalf("refused requests queued %d stream-updated events", n)
	}
	if got := auditActions(t, h, "client:ops"); len(got) != 0 {
		t.Fatalf("refused requests recorded %v", got)
	}
	if got := ops.must(http.StatusOK, "GET", path, nil); got["status"] != "enabled" {
		t.Fatalf("after refused requests the stream is %v", got["status"])
	}

	// Retry now: the failed verification is delivered.
	if got := ops.must(http.StatusAccepted, "POST", path+"/retry", nil); got["retried"] != float64(1) {
		t.Errorf("retry = %v, want 1 retried", got)
	}
	if _, ok := pr.wait(1)[0].Event.(*ssfevents.VerificationEvent); !ok {
		t.Error("the retried event is not the verification")
	}

	// Paused by the administrator: the receiver is told, though the
	// stream is paused; the events that follow are held.
	got := ops.must(http.StatusOK, "POST", path+"/status", map[string]any{"status": "paused", "reason": "maintenance"})
	if got["status"] != "paused" || got["status_reason"] != "maintenance" {
		t.Errorf("paused = %v", got)
	}
	if status, reason := streamUpdated(t, pr.wait(2)[1], id); status != "paused" || reason != "maintenance" {
		t.Errorf("stream-updated %s %q, want paused for maintenance", status, reason)
	}
	adminRevoke(t, h, u.ID)
	waitRows(t, h, func(rows []pushRow) bool {
		held := 0
		for _, r := range rows {
			if r.Held {
				held++
			}
		}
		return held == 2
	})
	status, out := ops.call("POST", path+"/retry", nil)
	if m, _ := out.(map[string]any); status != http.StatusConflict || m["error"] != "conflict" {
		t.Errorf("retry of a paused stream: %d %v, want 409", status, out)
	}
	if got := ops.must(http.StatusOK, "GET", path, nil); got["held"] != float64(2) || got["backlog"] != float64(2) {
		t.Errorf("paused stream = %v, want 2 held", got)
	}

	// Enabled again: told, and what the pause held is delivered.
	ops.must(http.StatusOK, "POST", path+"/status", map[string]any{"status": "enabled"})
	updates, revoked := 0, 0
	for _, set := range pr.wait(5)[2:] {
		if _, ok := set.Event.(*ssfevents.StreamUpdateEvent); ok {
			if status, reason := streamUpdated(t, set, id); status != "enabled" || reason != "" {
				t.Errorf("stream-updated %s %q, want enabled", status, reason)
			}
			updates++
			continue
		}
		checkSessionRevoked(t, set, "ann@example.com")
		revoked++
	}
	if updates != 1 || revoked != 2 {
		t.Errorf("after enabling: %d stream-updated, %d session-revoked; want 1 and 2", updates, revoked)
	}

	// Setting the status it has is no change; the receiver's own change
	// of status is not announced to it.
	ops.must(http.StatusOK, "POST", path+"/status", map[string]any{"status": "enabled"})
	rc.must(http.StatusOK, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "paused"})
	if n := streamUpdatedRows(t, h); n != 2 {
		t.Errorf("%d stream-updated events queued, want 2 (the administrator's pause and enable)", n)
	}
	want := []string{"ssf.stream_retry", "ssf.stream_status", "ssf.stream_status"}
	if got := auditActions(t, h, "client:ops"); !slices.Equal(got, want) {
		t.Errorf("audit log of the administrator: %v, want %v", got, want)
	}
	entries, _ := audit.List(h.Ctx, h.DB.Pool, audit.Query{Limit: 1})
	var details map[string]any
	json.Unmarshal(entries[0].Details, &details) //nolint:errcheck // checked below
	if entries[0].Actor != "client:receiver" || entries[0].Target != "client:receiver" || details["status"] != "paused" {
		t.Errorf("the receiver's own change: %+v", entries[0])
	}
}

// TestAdminAPI_PollStreamUpdated: a paused or disabled poll stream offers
// its receiver only the stream-updated events that say so; disabling
// drops the rest.
func TestAdminAPI_PollStreamUpdated(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	ops := adminClient(t, h, "ops")
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}})["stream_id"].(string)
	path := "/admin/api/signals/streams/" + id
	jwks := h.Issuer + "/.well-known/jwks.json"
	pollOne := func() *token.SecEvent {
		t.Helper()
		sets, _ := rc.poll(map[string]any{"returnImmediately": true})
		if len(sets) != 1 {
			t.Fatalf("poll: %d SETs, want 1", len(sets))
		}
		for jti, raw := range sets {
			rc.must(http.StatusOK, "POST", "/ssf/poll", map[string]any{"ack": []string{jti}, "returnImmediately": true})
			return verifySET(t, raw, jwks, h.Issuer, "receiver")
		}
		return nil
	}

	rc.must(http.StatusNoContent, "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "held"})
	ops.must(http.StatusOK, "POST", path+"/status", map[string]any{"status": "paused", "reason": "audit"})
	if status, reason := streamUpdated(t, pollOne(), id); status != "paused" || reason != "audit" {
		t.Errorf("stream-updated %s %q, want paused for audit", status, reason)
	}
	ops.must(http.StatusOK, "POST", path+"/status", map[string]any{"status": "disabled", "reason": "offboarded"})
	if status, _ := streamUpdated(t, pollOne(), id); status != "disabled" {
		t.Errorf("stream-updated %s, want disabled", status)
	}
	got := ops.must(http.StatusOK, "GET", path, nil)
	if got["status"] != "disabled" || got["backlog"] != float64(0) || got["failed"] != float64(1) || got["last_error"] != "the stream was disabled" {
		t.Errorf("disabled stream = %v, want the verification failed", got)
	}
}
