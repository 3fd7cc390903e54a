package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// fuzzRoutes are the admin API's routes that take a body, or that a body
// must not confuse; {id} is the path's fuzzed segment.
var fuzzRoutes = []string{
	"POST /admin/api/users",
	"POST /admin/api/users/{id}/password",
	"POST /admin/api/users/{id}/disable",
	"POST /admin/api/users/{id}/enable",
	"POST /admin/api/outbox/{id}/retry",
	"DELETE /admin/api/users/{id}/sessions",
	"POST /admin/api/signals/streams/{id}/status",
	"POST /admin/api/signals/streams/{id}/retry",
}

// FuzzAPI_Bodies sends arbitrary JSON bodies (and path ids: {user} is an
// account's, {stream} a Shared Signals stream's) to the admin API with a valid service account's token. No
// 5xx; a refusal is a 4xx with the OAuth-style JSON error
// {"error", "error_description"} and changes nothing. One provider and
// database serve every input; passwords are hashed at the least cost
// (servertest.CheapPasswords).
func FuzzAPI_Bodies(f *testing.F) {
	for _, seed := range []struct {
		route    uint8
		id, body string
	}{
		{0, "", `{"email": "new@example.com", "name": "New", "password": "` + password + `"}`},
		{0, "", `{"email": "new2@example.com", "password": "` + password + `", "admin": true, "temporary": false}`},
		{0, "", `{"email": "alice@example.com", "password": "` + password + `"}`},
		{0, "", `{"email": "not an address", "password": "` + password + `"}`},
		{0, "", `{"email": "weak@example.com", "password": "password"}`},
		{0, "", `{"email": "x@example.com", "name": "\u0000", "password": "` + password + `"}`},
		{0, "", `{"email": "x@example.com", "unknown": 1}`},
		{0, "", `{"email": 5}`},
		{0, "", `{"email": "x@example.com"} {"email": "y@example.com"}`},
		{0, "", `[`},
		{0, "", ``},
		{0, "", `{"email": "` + strings.Repeat("a", 9000) + `"}`},
		{1, "{user}", `{"password": "` + password + ` 2", "temporary": true}`},
		{1, "{user}", `{"password": "short"}`},
		{1, "{user}", `{"password": null, "temporary": "yes"}`},
		{1, "00000000-0000-0000-0000-000000000000", `{"password": "` + password + `"}`},
		{1, "not-a-uuid", `{}`},
		{2, "{user}", `{}`},
		{3, "{user}", ``},
		{4, "1", ``},
		{4, "-1", `{}`},
		{5, "{user}%00", ``},
		{6, "{stream}", `{"status": "paused", "reason": "maintenance"}`},
		{6, "{stream}", `{"status": "asleep"}`},
		{6, "{stream}", `{"status": "enabled", "why": 1}`},
		{6, "{stream}", `{"status": "disabled", "reason": "\u0000"}`},
		{6, "{stream}", `{"status": 1}`},
		{6, "nope", `{"status": "paused"}`},
		{7, "{stream}", ``},
		{7, "nope", ``},
		{6, "%00", `{"status": "paused"}`},
		{7, "%ff", ``},
	} {
		f.Add(seed.route, seed.id, seed.body)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	alice := h.CreateUser("alice@example.com", password)
	secret, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "offboarding", Name: "Offboarding",
		GrantTypes: []string{clients.GrantClientCredentials}, Scopes: []string{"openid"}, AdminServiceAccount: true})
	if err != nil {
		f.Fatal(err)
	}
	cc := clientcredentials.Config{ClientID: "offboarding", ClientSecret: secret,
		TokenURL: h.Issuer + "/oauth2/token", Scopes: []string{admin.Scope}}
	tok, err := cc.Token(h.Ctx)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "receiver", GrantTypes: []string{clients.GrantClientCredentials},
		Scopes: []string{ssf.Scope}}); err != nil {
		f.Fatal(err)
	}
	poll := ssf.DeliveryPoll
	stream, err := (&ssf.Store{Pool: h.DB.Pool}).Create(h.Ctx, "receiver", ssf.Config{Method: &poll})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, route uint8, id, body string) {
		method, path, _ := strings.Cut(fuzzRoutes[int(route)%len(fuzzRoutes)], " ")
		id = strings.NewReplacer("{user}", alice.ID, "{stream}", stream.ID).Replace(id)
		path = strings.ReplaceAll(path, "{id}", id)
		req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
		if err != nil || req.URL.EscapedPath() != path {
			return // not a request a client could send to this route
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
			return // done: what it changed is the API's other tests' to check
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
