package ssf_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// fuzzRoutes are the management routes; {id} is the fuzzed query value
// ({stream} the receiver's stream). Poll is left out: a poll that may wait
// holds each input for the long-poll time.
var fuzzRoutes = []string{
	"POST /ssf/streams",
	"PATCH /ssf/streams",
	"PUT /ssf/streams",
	"GET /ssf/streams?stream_id={id}",
	"DELETE /ssf/streams?stream_id={id}",
	"GET /ssf/status?stream_id={id}",
	"POST /ssf/status",
	"POST /ssf/subjects:add",
	"POST /ssf/subjects:remove",
	"POST /ssf/verify",
}

// FuzzStreams_Bodies sends arbitrary bodies and stream ids to the stream
// management API with a receiver's valid token. No 5xx; a refusal is a
// 4xx with the JSON error {"error", "error_description"} and changes
// nothing. One provider and database serve every input.
func FuzzStreams_Bodies(f *testing.F) {
	for _, seed := range []struct {
		route    uint8
		id, body string
	}{
		{0, "", `{"delivery": {"method": "urn:ietf:rfc:8936"}}`},
		{0, "", `{"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://r.example/events"}}`},
		{1, "", `{"stream_id": "{stream}", "description": "x", "events_requested": ["` + ssf.EventSessionRevoked + `"]}`},
		{1, "", `{"stream_id": "{stream}", "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "javascript:alert(1)"}}`},
		{1, "", `{"stream_id": "{stream}", "aud": ["receiver", "other"]}`},
		{1, "", `{"stream_id": "{stream}", "events_requested": null}`},
		{2, "", `{"stream_id": "{stream}", "delivery": {"method": "urn:ietf:rfc:8936"}}`},
		{2, "", `{"stream_id": 7}`},
		{3, "{stream}", ``},
		{3, "%00", ``},
		{4, "nope", ``},
		{5, "{stream}", ``},
		{6, "", `{"stream_id": "{stream}", "status": "paused", "reason": "\u0000"}`},
		{6, "", `{"stream_id": "{stream}", "status": "enabled"}`},
		{7, "", `{"stream_id": "{stream}", "subject": {"format": "email", "email": "a@example.com"}}`},
		{7, "", `{"stream_id": "{stream}", "subject": {"format": "iss_sub", "iss": "{issuer}", "sub": "` + strings.Repeat("s", 300) + `"}}`},
		{7, "", `{"stream_id": "{stream}", "subject": {"format": "complex", "user": {}}}`},
		{8, "", `{"stream_id": "{stream}", "subject": {"format": "email", "email": "a@example.com"}}`},
		{9, "", `{"stream_id": "{stream}", "state": "` + strings.Repeat("x", 2000) + `"}`},
		{9, "", `[`},
		{9, "", `{} {}`},
	} {
		f.Add(seed.route, seed.id, seed.body)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	secret, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "receiver", Name: "Receiver",
		GrantTypes: []string{clients.GrantClientCredentials}, Scopes: []string{ssf.Scope}})
	if err != nil {
		f.Fatal(err)
	}
	tok, err := (&clientcredentials.Config{ClientID: "receiver", ClientSecret: secret, TokenURL: h.Issuer + "/oauth2/token",
		Scopes: []string{ssf.Scope}}).Token(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	poll := ssf.DeliveryPoll
	st, err := (&ssf.Store{Pool: h.DB.Pool}).Create(h.Ctx, "receiver", ssf.Config{Method: &poll})
	if err != nil {
		f.Fatal(err)
	}
	fill := strings.NewReplacer("{stream}", st.ID, "{issuer}", h.Issuer)
	f.Fuzz(func(t *testing.T, route uint8, id, body string) {
		method, path, _ := strings.Cut(fuzzRoutes[int(route)%len(fuzzRoutes)], " ")
		// Any id at all, escaped as a client would send it.
		path = strings.ReplaceAll(path, "{id}", url.QueryEscape(fill.Replace(id)))
		req, err := http.NewRequest(method, h.URL+path, strings.NewReader(fill.Replace(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		before := h.Stored(t)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
		}
		if resp.StatusCode < 400 {
			return // what it changed is the other tests' to check
		}
		var e struct {
			Error       *string `json:"error"`
			Description *string `json:"error_description"`
		}
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || *e.Error == "" || e.Description == nil ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s %s: %d with %q, not the JSON error:\n%s", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
			t.Fatalf("%s %s: refused with %d (%s), yet %v changed", method, path, resp.StatusCode, *e.Error, changed)
		}
	})
}
