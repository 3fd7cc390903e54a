package registration_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/registration"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// FuzzHandler_Bodies sends arbitrary bodies to the registration endpoint
// (with a live initial access token, or none under open registration) and
// to a registered client's configuration endpoint (with its registration
// access token). No 5xx; a refusal is a 4xx with the JSON error
// {"error", "error_description"} and changes nothing; a registration adds
// one client, and an update keeps the client's secret and token.
func FuzzHandler_Bodies(f *testing.F) {
	for _, seed := range []struct {
		put, open bool
		body      string
	}{
		{false, false, `{"redirect_uris": ["https://app.example.com/cb"]}`},
		{false, false, `{"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none", "scope": "openid email"}`},
		{false, false, `{"redirect_uris": ["http://app.example.com/cb"]}`},
		{false, false, `{"redirect_uris": ["https://app.example.com/cb#f"], "grant_types": ["implicit"]}`},
		{false, false, `{"grant_types": ["client_credentials"], "scope": "admin"}`},
		{false, false, `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}`},
		{false, false, `{"redirect_uris": ["https://a.example/cb"], "backchannel_logout_uri": "https://10.1.2.3/bc"}`},
		{false, false, `{"redirect_uris": "https://a.example/cb"}`},
		{false, false, `{"client_name": "\u0000"}`},
		{false, false, `[`},
		{false, false, ``},
		{false, false, `{} {}`},
		{false, true, `{"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}`},
		{false, true, `{"redirect_uris": ["http://127.0.0.1:9/cb"]}`},
		{true, false, `{"client_id": "{id}", "redirect_uris": ["https://app.example.com/new"]}`},
		{true, false, `{"client_id": "{id}", "redirect_uris": ["https://app.example.com/new"], "token_endpoint_auth_method": "none"}`},
		{true, false, `{"client_id": "{id}", "client_secret": "x", "redirect_uris": ["https://app.example.com/new"]}`},
		{true, false, `{"client_id": "other", "redirect_uris": ["https://app.example.com/new"]}`},
		{true, false, `{"client_id": "{id}"}`},
	} {
		f.Add(seed.put, seed.open, seed.body)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f, func(c *server.Config) {
		c.OpenRegistration = registration.OpenNative
		c.AllowPrivateBackchannel = false
	})
	tok, err := (&registration.Tokens{Pool: h.Srv.Pool, Now: time.Now}).Issue(h.Ctx, 24*time.Hour, 0)
	if err != nil {
		f.Fatal(err)
	}
	reg := call(f, "POST", h.URL+"/oauth2/register", tok.Token, `{"redirect_uris": ["https://app.example.com/cb"]}`)
	if reg.status != http.StatusCreated {
		f.Fatalf("registration: %d %s", reg.status, reg.raw)
	}
	id, uri, access := reg.body["client_id"].(string), reg.body["registration_client_uri"].(string), reg.body["registration_access_token"].(string)
	secretHash := func(t testing.TB) []byte {
		return dbtest.Value[[]byte](t, h.DB.Pool, `SELECT secret_hash FROM oauth_clients WHERE id = $1`, id)
	}
	wantHash := secretHash(f)

	f.Fuzz(func(t *testing.T, put, open bool, body string) {
		method, url, token := "POST", h.URL+"/oauth2/register", tok.Token
		switch {
		case put:
			method, url, token = "PUT", uri, access
			body = strings.ReplaceAll(body, "{id}", id)
		case open:
			token = ""
		}
		before := h.Stored(t)
		clientsBefore := dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM oauth_clients`)
		r := call(t, method, url, token, body)
		switch {
		case r.status >= 500:
			t.Fatalf("%s: status %d: %s", method, r.status, r.raw)
		case r.status < 400:
			if n := dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM oauth_clients`); !put && n != clientsBefore+1 {
				t.Fatalf("a registration (%d) made %d clients", r.status, n-clientsBefore)
			}
			if put && !bytes.Equal(secretHash(t), wantHash) {
				t.Fatal("an update changed the client's secret")
			}
			if put && r.body["registration_access_token"] != access {
				t.Fatal("an update changed the registration access token")
			}
			return
		}
		e, _ := r.body["error"].(string)
		if d, _ := r.body["error_description"].(string); e == "" || d == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d with %q, not the JSON error:\n%s", method, r.status, r.header.Get("Content-Type"), r.raw)
		}
		if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
			t.Fatalf("%s: refused with %d (%s), yet %v changed", method, r.status, e, changed)
		}
	})
}

type answer struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func call(t testing.TB, method, url, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.raw, _ = io.ReadAll(resp.Body)
	json.Unmarshal(a.raw, &a.body) //nolint:errcheck // checked by the caller's expectations
	return a
}
