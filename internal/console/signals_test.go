package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// waitStream waits until ok holds for the stream's state.
func waitStream(t *testing.T, e *env, id string, ok func(ssf.State) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := ssf.StreamState(e.Ctx, e.DB.Pool, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream never reached the state awaited: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsole_SignalStreams: the Shared Signals page lists a push stream
// with its failed event; Retry now delivers it; Pause (with a reason the
// receiver is told) and Enable change the stream, each audited with the
// administrator; a refused form changes nothing.
func TestConsole_SignalStreams(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	var mu sync.Mutex
	refuse, delivered := 1, 0
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if refuse > 0 {
			refuse--
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		delivered++
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(endpoint.Close)
	e.NewRP("siem", func(c *clients.Client) { c.Scopes = append(c.Scopes, ssf.Scope) })
	store := &ssf.Store{Pool: e.DB.Pool, AllowPrivate: true}
	push, to := ssf.DeliveryPush, endpoint.URL
	st, err := store.Create(e.Ctx, "siem", ssf.Config{Method: &push, EndpointURL: &to})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(e.Ctx, "siem", st.ID, "s"); err != nil {
		t.Fatal(err)
	}
	waitStream(t, e, st.ID, func(s ssf.State) bool { return s.Failed == 1 })

	page := func(t *testing.T, status int, want string) servertest.Page {
		t.Helper()
		p := b.Get(e.URL + "/admin/signals")
		servertest.WantPage(t, p, "/admin/signals", status, want)
		servertest.CheckMarkup(t, p.Body)
		return p
	}
	p := page(t, http.StatusOK, "HTTP 400")
	if want := `id="stream-` + st.ID + `" data-status="enabled" data-backlog="0" data-failed="1"`; !strings.Contains(p.Body, want) {
		t.Fatalf("the page does not show %s:\n%s", want, p.Body)
	}

	resp, body := send(t, e, b, p, "/admin/signals/"+st.ID+"/retry", url.Values{})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("retry answered %d:\n%s", resp.StatusCode, body)
	}
	servertest.WantPage(t, b.Get(e.URL+resp.Header.Get("Location")), "/admin/signals", http.StatusOK, "1 event of the stream due again now")
	waitStream(t, e, st.ID, func(s ssf.State) bool { return s.Failed == 0 && s.Backlog == 0 })

	// Refused: an unknown status, an unknown stream, a stale form.
	resp, body = send(t, e, b, page(t, http.StatusOK, "Pause"), "/admin/signals/"+st.ID+"/status", url.Values{"status": {"disabled"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Nothing was changed") {
		t.Errorf("status disabled answered %d:\n%s", resp.StatusCode, body)
	}
	resp, body = send(t, e, b, page(t, http.StatusOK, "Pause"), "/admin/signals/nope/status", url.Values{"status": {"paused"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "Nothing was changed") {
		t.Errorf("an unknown stream answered %d:\n%s", resp.StatusCode, body)
	}
	if resp := postToken(t, b, e.URL+"/admin/signals/"+st.ID+"/retry", "not-the-token"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a stale form answered %d, want 403", resp.StatusCode)
	}
	if n := e.audited(t, audit.Admin(adm.ID), "ssf.stream_status", audit.Client("siem")); n != 0 {
		t.Fatalf("refused forms recorded %d status changes", n)
	}

	resp, body = send(t, e, b, page(t, http.StatusOK, "Pause"), "/admin/signals/"+st.ID+"/status",
		url.Values{"status": {"paused"}, "reason": {"maintenance"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pause answered %d:\n%s", resp.StatusCode, body)
	}
	p = b.Get(e.URL + resp.Header.Get("Location"))
	servertest.WantPage(t, p, "/admin/signals", http.StatusOK, "The stream is paused")
	if !strings.Contains(p.Body, `data-status="paused"`) || !strings.Contains(p.Body, "(maintenance)") ||
		!strings.Contains(p.Body, `action="/admin/signals/`+st.ID+`/status"`) || strings.Contains(p.Body, `action="/admin/signals/`+st.ID+`/retry"`) {
		t.Fatalf("the paused stream's row:\n%s", p.Body)
	}
	// Told, though paused: the stream-updated event is delivered.
	waitStream(t, e, st.ID, func(s ssf.State) bool { return s.Backlog == 0 })
	if n := dbtest.Value[int](t, e.DB.Pool, `SELECT count(*) FROM outbox WHERE reason = $1 AND delivered_at IS NOT NULL`,
		ssf.EventStreamUpdated); n != 1 {
		t.Errorf("%d stream-updated events delivered, want 1", n)
	}
	resp, body = send(t, e, b, p, "/admin/signals/"+st.ID+"/retry", url.Values{})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "enable it first") {
		t.Errorf("retry of a paused stream answered %d:\n%s", resp.StatusCode, body)
	}

	resp, body = send(t, e, b, p, "/admin/signals/"+st.ID+"/status", url.Values{"status": {"enabled"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("enable answered %d:\n%s", resp.StatusCode, body)
	}
	if p := page(t, http.StatusOK, "Pause"); !strings.Contains(p.Body, `data-status="enabled"`) {
		t.Errorf("not enabled:\n%s", p.Body)
	}
	if n := e.audited(t, audit.Admin(adm.ID), "ssf.stream_status", audit.Client("siem")); n != 2 {
		t.Errorf("%d status changes audited with the administrator, want 2", n)
	}
	if n := e.audited(t, audit.Admin(adm.ID), "ssf.stream_retry", audit.Client("siem")); n != 1 {
		t.Errorf("%d retries audited, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered < 2 {
		t.Errorf("the endpoint accepted %d SETs, want the retried verification and the stream-updated", delivered)
	}
}
