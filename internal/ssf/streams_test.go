package ssf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// receiver is a receiver client of the provider: its token and how it
// calls the SSF endpoints.
type receiver struct {
	t     *testing.T
	h     *servertest.Harness
	id    string
	token string
}

// newReceiver registers a client_credentials client with scopes and gets
// its token for them.
func newReceiver(t *testing.T, h *servertest.Harness, id string, scopes ...string) *receiver {
	t.Helper()
	rp := h.NewRP(id, func(c *clients.Client) { c.Scopes = append(c.Scopes, scopes...) })
	tok, err := (&clientcredentials.Config{ClientID: rp.ID, ClientSecret: rp.Secret, TokenURL: h.Issuer + "/oauth2/token",
		Scopes: scopes}).Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials token for %s: %v", id, err)
	}
	return &receiver{t: t, h: h, id: id, token: tok.AccessToken}
}

// call sends body (JSON unless it is a string) and returns the status and
// the decoded answer (nil when empty).
func (rc *receiver) call(method, path string, body any) (int, any) {
	rc.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, rc.h.Issuer+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if rc.token != "" {
		req.Header.Set("Authorization", "Bearer "+rc.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			rc.t.Fatalf("%s %s: status %d, body not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// must calls and fails the test unless the status is want.
func (rc *receiver) must(want int, method, path string, body any) map[string]any {
	rc.t.Helper()
	status, out := rc.call(method, path, body)
	if status != want {
		rc.t.Fatalf("%s %s: status %d, want %d: %v", method, path, status, want, out)
	}
	m, _ := out.(map[string]any)
	return m
}

func pushEndpoint(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/events"
}

func TestConfiguration(t *testing.T) {
	h := servertest.New(t)
	resp, err := http.Get(h.Issuer + "/.well-known/ssf-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"spec_version":               "1_0",
		"issuer":                     h.Issuer,
		"jwks_uri":                   h.Issuer + "/.well-known/jwks.json",
		"delivery_methods_supported": []any{ssf.DeliveryPush, ssf.DeliveryPoll},
		"configuration_endpoint":     h.Issuer + "/ssf/streams",
		"status_endpoint":            h.Issuer + "/ssf/status",
		"add_subject_endpoint":       h.Issuer + "/ssf/subjects:add",
		"remove_subject_endpoint":    h.Issuer + "/ssf/subjects:remove",
		"verification_endpoint":      h.Issuer + "/ssf/verify",
		"authorization_schemes":      []any{map[string]any{"spec_urn": "urn:ietf:rfc:6749"}},
		"default_subjects":           "ALL",
	}
	for k, v := range want {
		if !reflect.DeepEqual(c[k], v) {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	// Every endpoint it names answers (here: asks for a token).
	for _, k := range []string{"configuration_endpoint", "status_endpoint"} {
		resp, err := http.Get(c[k].(string) + "?stream_id=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", k, resp.StatusCode)
		}
	}
}

func TestStreams_Lifecycle(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	endpoint := pushEndpoint(t)

	created := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery":         map[string]any{"method": ssf.DeliveryPush, "endpoint_url": endpoint, "authorization_header": "Bearer receiver-secret"},
		"events_requested": []string{ssf.EventSessionRevoked, "urn:example:not-sent-here"},
		"description":      "the receiver's stream",
	})
	id, _ := created["stream_id"].(string)
	if id == "" || created["iss"] != h.Issuer || created["aud"] != "receiver" {
		t.Fatalf("created = %v, want a stream_id, iss %s, aud receiver", created, h.Issuer)
	}
	if !reflect.DeepEqual(created["events_delivered"], []any{ssf.EventSessionRevoked}) {
		t.Errorf("events_delivered = %v, want only session-revoked (the intersection)", created["events_delivered"])
	}
	d := created["delivery"].(map[string]any)
	if d["endpoint_url"] != endpoint || d["authorization_header"] != nil {
		t.Errorf("delivery = %v, want the endpoint and no authorization header shown", d)
	}
	var sealed []byte
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT authorization_header_encrypted FROM ssf_streams WHERE id = $1`, id).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || bytes.Contains(sealed, []byte("receiver-secret")) {
		t.Errorf("the authorization header is stored in the clear or not at all: %q", sealed)
	}

	rc.must(http.StatusConflict, "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.DeliveryPoll}})

	if got := rc.must(http.StatusOK, "GET", "/ssf/streams?stream_id="+id, nil); !reflect.DeepEqual(got, created) {
		t.Errorf("read = %v, want what create returned %v", got, created)
	}
	if _, list := rc.call("GET", "/ssf/streams", nil); len(list.([]any)) != 1 {
		t.Errorf("list = %v, want the one stream", list)
	}

	patched := rc.must(http.StatusOK, "PATCH", "/ssf/streams", map[string]any{
		"stream_id": id, "iss": h.Issuer, "aud": "receiver",
		"events_requested": []string{ssf.EventSessionRevoked, ssf.EventCredentialChange},
	})
	if patched["description"] != "the receiver's stream" || len(patched["events_delivered"].([]any)) != 2 {
		t.Errorf("patched = %v, want the description kept and two events delivered", patched)
	}
	moved := pushEndpoint(t)
	patched = rc.must(http.StatusOK, "PATCH", "/ssf/streams", map[string]any{
		"stream_id": id, "delivery": map[string]any{"endpoint_url": moved}})
	if d := patched["delivery"].(map[string]any); d["method"] != ssf.DeliveryPush || d["endpoint_url"] != moved {
		t.Errorf("delivery after patching the endpoint alone = %v, want push to %s", d, moved)
	}

	replaced := rc.must(http.StatusOK, "PUT", "/ssf/streams", map[string]any{
		"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPoll},
	})
	d = replaced["delivery"].(map[string]any)
	if d["method"] != ssf.DeliveryPoll || d["endpoint_url"] != h.Issuer+"/ssf/poll" || replaced["description"] != "" {
		t.Errorf("replaced = %v, want poll at the transmitter's endpoint and no description", replaced)
	}
	if len(replaced["events_delivered"].([]any)) != len(ssf.EventsSupported()) {
		t.Errorf("replaced events_delivered = %v, want every event (the default)", replaced["events_delivered"])
	}
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT authorization_header_encrypted FROM ssf_streams WHERE id = $1`, id).Scan(&sealed); err != nil || sealed != nil {
		t.Errorf("a poll stream keeps a push authorization header: %q %v", sealed, err)
	}

	if got := rc.must(http.StatusOK, "GET", "/ssf/status?stream_id="+id, nil); got["status"] != "enabled" {
		t.Errorf("status = %v, want enabled", got)
	}
	if got := rc.must(http.StatusOK, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "paused", "reason": "maintenance"}); got["status"] != "paused" || got["reason"] != "maintenance" {
		t.Errorf("set status = %v, want paused for maintenance", got)
	}
	if got := rc.must(http.StatusOK, "GET", "/ssf/status?stream_id="+id, nil); got["status"] != "paused" {
		t.Errorf("status after pausing = %v, want paused", got)
	}

	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "Ann@Example.com"}, "verified": true})
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "iss_sub", "iss": h.Issuer, "sub": "someone"}})
	rc.must(http.StatusNoContent, "POST", "/ssf/subjects:remove", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})
	var included, excluded int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FILTER (WHERE included), count(*) FILTER (WHERE NOT included)
		FROM ssf_stream_subjects WHERE stream_id = $1`, id).Scan(&included, &excluded); err != nil {
		t.Fatal(err)
	}
	if included != 1 || excluded != 1 {
		t.Errorf("subjects: %d included, %d removed; want 1 and 1 (the email matched case-insensitively)", included, excluded)
	}

	var audited int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM audit_log WHERE actor = 'client:receiver' AND action LIKE 'ssf.%'`).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != 8 {
		t.Errorf("%d audit entries for the stream's changes, want 8 (create, 3 updates, status, 3 subjects)", audited)
	}

	rc.must(http.StatusNoContent, "DELETE", "/ssf/streams?stream_id="+id, nil)
	rc.must(http.StatusNotFound, "GET", "/ssf/streams?stream_id="+id, nil)
	if _, list := rc.call("GET", "/ssf/streams", nil); len(list.([]any)) != 0 {
		t.Errorf("list after delete = %v, want none", list)
	}
}

// TestStreams_Refused: every refusal answers in JSON with the status the
// specs name, and changes nothing.
func TestStreams_Refused(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	other := newReceiver(t, h, "other", ssf.Scope)
	noScope := newReceiver(t, h, "no-scope")
	anonymous := &receiver{t: t, h: h}
	// A person's token, even with the ssf scope, is not a receiver's.
	app := h.NewRP("app", func(c *clients.Client) { c.Scopes = append(c.Scopes, ssf.Scope) })
	app.Conf.Scopes = append(app.Conf.Scopes, ssf.Scope)
	h.CreateUser("ann@example.com", password)
	a := app.AuthURL()
	personTok, _, _ := app.Exchange(t, app.Code(t, servertest.NewBrowser(t).SignIn(a.URL, "ann@example.com", password), a), a)
	if scope, _ := personTok.Extra("scope").(string); !strings.Contains(scope, ssf.Scope) {
		t.Fatalf("the person's token has scope %q, want it to include ssf (else the case below proves nothing)", scope)
	}
	person := &receiver{t: t, h: h, token: personTok.AccessToken}
	endpoint := pushEndpoint(t)
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": endpoint}})["stream_id"].(string)
	otherID := other.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}})["stream_id"].(string)

	snapshot := func() string {
		var s string
		if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT
			(SELECT coalesce(json_agg(s ORDER BY id)::text, '') FROM ssf_streams s) ||
			(SELECT coalesce(json_agg(x ORDER BY subject_key)::text, '') FROM ssf_stream_subjects x) ||
			(SELECT count(*)::text FROM audit_log)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()

	tests := []struct {
		name         string
		rc           *receiver
		method, path string
		body         any
		status       int
		code         string
	}{
		{"no token", anonymous, "GET", "/ssf/streams", nil, 401, "unauthorized"},
		{"garbage token", &receiver{t: t, h: h, token: "not-a-token"}, "GET", "/ssf/streams", nil, 401, "invalid_token"},
		{"create without a method", rc, "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"endpoint_url": endpoint}}, 400, "invalid_request"},
		{"no ssf scope: create", noScope, "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.DeliveryPoll}}, 403, "insufficient_scope"},
		{"no ssf scope: read", noScope, "GET", "/ssf/streams?stream_id=" + id, nil, 403, "insufficient_scope"},
		{"a person's token", person, "GET", "/ssf/streams", nil, 403, "insufficient_scope"},
		{"a person's token: create", person, "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.DeliveryPoll}}, 403, "insufficient_scope"},
		{"another receiver's stream: read", rc, "GET", "/ssf/streams?stream_id=" + otherID, nil, 404, "not_found"},
		{"another receiver's stream: delete", rc, "DELETE", "/ssf/streams?stream_id=" + otherID, nil, 404, "not_found"},
		{"another receiver's stream: status", rc, "POST", "/ssf/status", map[string]any{"stream_id": otherID, "status": "disabled"}, 404, "not_found"},
		{"body not JSON", rc, "PATCH", "/ssf/streams", "{not json", 400, "invalid_request"},
		{"two JSON objects", rc, "PATCH", "/ssf/streams", `{"stream_id":"` + id + `"} {}`, 400, "invalid_request"},
		{"wrong type", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "events_requested": "all"}, 400, "invalid_request"},
		{"no stream_id", rc, "PATCH", "/ssf/streams", map[string]any{"description": "x"}, 400, "invalid_request"},
		{"changing iss", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "iss": "https://evil.example", "description": "x"}, 400, "invalid_request"},
		{"changing aud", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "aud": "other", "description": "x"}, 400, "invalid_request"},
		{"unknown method", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": "urn:example:carrier-pigeon"}}, 400, "invalid_request"},
		{"push without endpoint", rc, "PUT", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPush}}, 400, "invalid_request"},
		{"push over plain http", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": "http://receiver.example.com/events"}}, 400, "invalid_request"},
		{"push with a fragment", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": "https://receiver.example.com/events#x"}}, 400, "invalid_request"},
		{"poll with the receiver's endpoint", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPoll, "endpoint_url": "https://receiver.example.com/"}}, 400, "invalid_request"},
		{"header on two lines", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "delivery": map[string]any{"method": ssf.DeliveryPush, "endpoint_url": endpoint, "authorization_header": "Bearer a\r\nX-Evil: 1"}}, 400, "invalid_request"},
		{"description too long", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "description": strings.Repeat("x", 1001)}, 400, "invalid_request"},
		{"body too large", rc, "PATCH", "/ssf/streams", map[string]any{"stream_id": id, "description": strings.Repeat("x", 40<<10)}, 413, ""},
		{"unknown status", rc, "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "sleeping"}, 400, "invalid_request"},
		{"status without stream_id", rc, "GET", "/ssf/status", nil, 400, "invalid_request"},
		{"delete without stream_id", rc, "DELETE", "/ssf/streams", nil, 400, "invalid_request"},
		{"subject missing", rc, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id}, 400, "invalid_request"},
		{"subject format unknown", rc, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"format": "phone_number", "phone_number": "+15555550100"}}, 400, "invalid_request"},
		{"email subject without email", rc, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"format": "email"}}, 400, "invalid_request"},
		{"iss_sub of another issuer", rc, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"format": "iss_sub", "iss": "https://other.example", "sub": "u"}}, 400, "invalid_request"},
		{"opaque subject", rc, "POST", "/ssf/subjects:remove", map[string]any{"stream_id": id, "subject": map[string]any{"format": "opaque", "id": "x"}}, 400, "invalid_request"},
		{"subject on another receiver's stream", rc, "POST", "/ssf/subjects:add", map[string]any{"stream_id": otherID, "subject": map[string]any{"format": "email", "email": "a@example.com"}}, 404, "not_found"},
		{"verify without stream_id", rc, "POST", "/ssf/verify", map[string]any{"state": "s"}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := tt.rc.call(tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, out)
			}
			m, _ := out.(map[string]any)
			if tt.code != "" && m["error"] != tt.code {
				t.Errorf("error = %v, want %s", m["error"], tt.code)
			}
			if desc, _ := m["error_description"].(string); desc == "" {
				t.Errorf("no error_description: %v", out)
			}
			if after := snapshot(); after != before {
				t.Errorf("a refused request changed something:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}
