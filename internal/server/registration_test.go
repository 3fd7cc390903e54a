package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/registration"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// regResponse is an answer of the registration or configuration endpoint.
type regResponse struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r regResponse) str(key string) string { s, _ := r.Body[key].(string); return s }

// wantError checks a refusal in RFC 7591 §3.2.2's (or RFC 6750's) format.
func (r regResponse) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.Status != status || r.str("error") != code {
		t.Fatalf("got %d %v, want %d %s", r.Status, r.Body, status, code)
	}
	if r.str("error_description") == "" {
		t.Errorf("%s without an error_description", code)
	}
	if status == http.StatusUnauthorized && !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
	}
}

// regCall sends body (a JSON value, or raw bytes) to url with method and
// token as a Bearer token ("" for none).
func regCall(t *testing.T, method, url, token string, body any) regResponse {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := regResponse{Status: resp.StatusCode, Header: resp.Header}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("%s %s: status %d, body not JSON: %s", method, url, resp.StatusCode, raw)
		}
	}
	return out
}

// initialToken makes an initial access token as `idp clients
// registration-token` does, through the instance's own Tokens (so that
// its discovery sees it at once, not within liveTTL).
func initialToken(t *testing.T, h *servertest.Harness, ttl time.Duration, uses int) string {
	t.Helper()
	tok, err := h.Srv.Registration.Tokens.Issue(h.Ctx, ttl, uses)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// expiredToken is an initial access token that expired an hour ago.
func expiredToken(t *testing.T, h *servertest.Harness) string {
	t.Helper()
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	tok, err := (&registration.Tokens{Pool: h.Srv.Pool, Now: past}).Issue(h.Ctx, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func countClients(t *testing.T, h *servertest.Harness) int64 {
	t.Helper()
	return dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM oauth_clients`)
}

func discoveryHasRegistration(t *testing.T, h *servertest.Harness) bool {
	t.Helper()
	var doc map[string]any
	resp, err := http.Get(h.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	ep, ok := doc["registration_endpoint"]
	if ok && ep != h.Issuer+"/oauth2/register" {
		t.Errorf("registration_endpoint = %v", ep)
	}
	return ok
}

// callbackServer is an app's redirect URI on loopback.
func callbackServer(t *testing.T) *httptest.Server {
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "callback reached") }))
	t.Cleanup(cb.Close)
	return cb
}

// TestRegistration_InitialToken: registration takes a live initial access
// token and nothing else; a registered client signs a person in with
// go-oidc, after the consent every registered client asks for.
func TestRegistration_InitialToken(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	reg := h.Issuer + "/oauth2/register"
	cb := callbackServer(t)
	meta := map[string]any{"client_name": "Registered app", "redirect_uris": []string{cb.URL + "/callback"},
		"scope": "openid profile email offline_access"}

	if discoveryHasRegistration(t, h) {
		t.Error("discovery names a registration endpoint while registration is off")
	}
	before := countClients(t, h)
	now := time.Now()
	expired := expiredToken(t, h)
	for name, token := range map[string]string{"no token": "", "unknown token": "not-a-token", "expired token": expired} {
		t.Run(name, func(t *testing.T) {
			regCall(t, "POST", reg, token, meta).wantError(t, http.StatusUnauthorized, "invalid_token")
		})
	}
	t.Run("not a bearer token", func(t *testing.T) {
		req, _ := http.NewRequest("POST", reg, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("someone", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
	if n := countClients(t, h); n != before {
		t.Fatalf("refused registrations stored clients: %d, had %d", n, before)
	}

	once := initialToken(t, h, time.Hour, 1)
	if !discoveryHasRegistration(t, h) {
		t.Error("discovery does not name the registration endpoint while a token is live")
	}
	got := regCall(t, "POST", reg, once, meta)
	if got.Status != http.StatusCreated {
		t.Fatalf("registration: %d %v", got.Status, got.Body)
	}
	t.Run("used up", func(t *testing.T) {
		regCall(t, "POST", reg, once, meta).wantError(t, http.StatusUnauthorized, "invalid_token")
		if n := countClients(t, h); n != before+1 {
			t.Fatalf("%d clients, want %d", n, before+1)
		}
		if discoveryHasRegistration(t, h) {
			t.Error("discovery names the registration endpoint with no live token left")
		}
	})

	id, secret := got.str("client_id"), got.str("client_secret")
	t.Run("response", func(t *testing.T) {
		if id == "" || secret == "" || got.str("registration_access_token") == "" {
			t.Fatalf("no client_id, client_secret or registration_access_token: %v", got.Body)
		}
		if got.Body["client_secret_expires_at"] != float64(0) {
			t.Errorf("client_secret_expires_at = %v, want 0", got.Body["client_secret_expires_at"])
		}
		if at, _ := got.Body["client_id_issued_at"].(float64); int64(at) < now.Unix()-5 {
			t.Errorf("client_id_issued_at = %v", got.Body["client_id_issued_at"])
		}
		if got.str("registration_client_uri") != reg+"/"+id {
			t.Errorf("registration_client_uri = %q", got.str("registration_client_uri"))
		}
		if got.str("token_endpoint_auth_method") != "client_secret_basic" || got.str("client_name") != "Registered app" ||
			got.str("scope") != "openid profile email offline_access" {
			t.Errorf("registered metadata: %v", got.Body)
		}
		// Only hashes are kept.
		for _, sql := range []string{`SELECT count(*) FROM registration_tokens WHERE token_hash = convert_to($1, 'UTF8')`,
			`SELECT count(*) FROM client_registrations WHERE access_token_hash = convert_to($1, 'UTF8')`} {
			for _, tok := range []string{once, got.str("registration_access_token")} {
				if n := dbtest.Value[int64](t, h.DB.Pool, sql, tok); n != 0 {
					t.Errorf("a token is stored as it is")
				}
			}
		}
	})

	t.Run("code flow", func(t *testing.T) {
		p, err := oidc.NewProvider(h.Ctx, h.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		app := &servertest.RP{H: h, ID: id, Secret: secret, Callback: cb, Provider: p, Conf: oauth2.Config{
			ClientID: id, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: cb.URL + "/callback",
			Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}}
		alice := servertest.NewBrowser(t)
		a := app.AuthURL()
		// A registered client is a stranger to the person: consent first.
		page := alice.SignIn(a.URL, "alice@example.com", password)
		code := app.Code(t, alice.Post(h.Issuer+"/oauth2/auth", consentForm(t, page, "allow")), a)
		_, idt, _ := app.Exchange(t, code, a)
		if idt.Audience[0] != id {
			t.Errorf("aud = %v", idt.Audience)
		}
	})

	t.Run("audited", func(t *testing.T) {
		n := dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'clients.register' AND target = $1 AND actor = $2`,
			"client:"+id, "registration_token:"+registration.TokenID(once))
		if n != 1 {
			t.Fatalf("%d audit entries of the registration, want 1", n)
		}
	})
}

// TestRegistration_InvalidMetadata: metadata `idp clients create` would
// refuse is refused with RFC 7591's error, stores nothing and spends no
// use of the token.
func TestRegistration_InvalidMetadata(t *testing.T) {
	// Back-channel URIs on private networks refused, as in production.
	h := servertest.New(t, func(c *server.Config) { c.AllowPrivateBackchannel = false })
	reg := h.Issuer + "/oauth2/register"
	token := initialToken(t, h, time.Hour, 1)
	ok := "https://app.example.com/callback"
	cases := []struct {
		name string
		body any
		code string
	}{
		{"http redirect to a web host", map[string]any{"redirect_uris": []string{"http://app.example.com/cb"}}, "invalid_redirect_uri"},
		{"redirect with a fragment", map[string]any{"redirect_uris": []string{ok + "#x"}}, "invalid_redirect_uri"},
		{"wildcard redirect", map[string]any{"redirect_uris": []string{"https://*.example.com/cb"}}, "invalid_redirect_uri"},
		{"custom scheme", map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}, "invalid_redirect_uri"},
		{"no redirect URI for a code client", map[string]any{"client_name": "x"}, "invalid_client_metadata"},
		{"implicit grant", map[string]any{"redirect_uris": []string{ok}, "grant_types": []string{"implicit"}}, "invalid_client_metadata"},
		{"token response type", map[string]any{"redirect_uris": []string{ok}, "response_types": []string{"token"}}, "invalid_client_metadata"},
		{"unknown auth method", map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"},
		{"private_key_jwt without keys", map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		{"private key in jwks", map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "private_key_jwt",
			"jwks": json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)}, "invalid_client_metadata"},
		{"jwks_uri on a private network", map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "private_key_jwt",
			"jwks_uri": "https://10.0.0.1/jwks"}, "invalid_client_metadata"},
		{"back-channel URI on loopback", map[string]any{"redirect_uris": []string{ok}, "backchannel_logout_uri": "https://127.0.0.1/bc"}, "invalid_client_metadata"},
		{"back-channel URI over http", map[string]any{"redirect_uris": []string{ok}, "backchannel_logout_uri": "http://app.example.com/bc"}, "invalid_client_metadata"},
		{"id token alg", map[string]any{"redirect_uris": []string{ok}, "id_token_signed_response_alg": "HS256"}, "invalid_client_metadata"},
		{"admin scope", map[string]any{"redirect_uris": []string{ok}, "scope": "openid admin"}, "invalid_client_metadata"},
		{"bad scope", map[string]any{"redirect_uris": []string{ok}, "scope": "openid \"quoted\""}, "invalid_client_metadata"},
		{"not JSON", []byte(`redirect_uris=x`), "invalid_client_metadata"},
		{"not an object", []byte(`["https://app.example.com/cb"]`), "invalid_client_metadata"},
		{"body too large", map[string]any{"redirect_uris": []string{ok}, "client_name": strings.Repeat("x", 40<<10)}, "invalid_request"},
	}
	before := h.Stored(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status := http.StatusBadRequest
			if tc.code == "invalid_request" {
				status = http.StatusRequestEntityTooLarge // reqlimit, in the OAuth format
			}
			regCall(t, "POST", reg, token, tc.body).wantError(t, status, tc.code)
		})
	}
	if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
		t.Fatalf("refused registrations changed the database: %v", changed)
	}
	// The token's one use is still there.
	key := newRSAClient(t, "ignored", "k1")
	got := regCall(t, "POST", reg, token, map[string]any{"redirect_uris": []string{ok}, "token_endpoint_auth_method": "private_key_jwt",
		"jwks": json.RawMessage(key.jwks(t)), "token_endpoint_auth_signing_alg": "RS256"})
	if got.Status != http.StatusCreated {
		t.Fatalf("valid private_key_jwt registration: %d %v", got.Status, got.Body)
	}
	if got.str("client_secret") != "" || got.Body["client_secret_expires_at"] != nil || got.str("token_endpoint_auth_method") != "private_key_jwt" {
		t.Errorf("private_key_jwt client: %v", got.Body)
	}
}

// TestRegistration_OpenNative: with IDP_OPEN_REGISTRATION=native a public
// client redirected to loopback registers without a token; nothing else
// does.
func TestRegistration_OpenNative(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.OpenRegistration = registration.OpenNative })
	reg := h.Issuer + "/oauth2/register"
	if !discoveryHasRegistration(t, h) {
		t.Error("discovery does not name the registration endpoint while registration is open")
	}
	native := "http://127.0.0.1:53123/callback"
	before := countClients(t, h)
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"confidential", map[string]any{"redirect_uris": []string{native}, "token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"},
		{"auth method left out (client_secret_basic)", map[string]any{"redirect_uris": []string{native}}, "invalid_client_metadata"},
		{"https web app", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"},
		{"client_credentials", map[string]any{"redirect_uris": []string{native}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "client_credentials"}}, "invalid_client_metadata"},
		{"back-channel logout", map[string]any{"redirect_uris": []string{native}, "token_endpoint_auth_method": "none",
			"backchannel_logout_uri": "https://app.example.com/bc"}, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regCall(t, "POST", reg, "", tc.body).wantError(t, http.StatusBadRequest, tc.code)
		})
	}
	if n := countClients(t, h); n != before {
		t.Fatalf("refused registrations stored clients")
	}
	got := regCall(t, "POST", reg, "", map[string]any{"redirect_uris": []string{native, "http://[::1]:53123/callback"},
		"token_endpoint_auth_method": "none", "client_name": "CLI"})
	if got.Status != http.StatusCreated {
		t.Fatalf("native registration: %d %v", got.Status, got.Body)
	}
	if got.str("client_secret") != "" || got.str("token_endpoint_auth_method") != "none" {
		t.Errorf("native client: %v", got.Body)
	}
	id, rat := got.str("client_id"), got.str("registration_access_token")
	t.Run("code flow with PKCE", func(t *testing.T) {
		h.CreateUser("bob@example.com", password)
		cb := callbackServer(t)
		r := regCall(t, "POST", reg, "", map[string]any{"redirect_uris": []string{cb.URL + "/callback"}, "token_endpoint_auth_method": "none"})
		if r.Status != http.StatusCreated {
			t.Fatalf("registration: %d %v", r.Status, r.Body)
		}
		p, err := oidc.NewProvider(h.Ctx, h.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		app := &servertest.RP{H: h, ID: r.str("client_id"), Callback: cb, Provider: p, Conf: oauth2.Config{
			ClientID: r.str("client_id"), Endpoint: p.Endpoint(), RedirectURL: cb.URL + "/callback", Scopes: []string{oidc.ScopeOpenID}}}
		bob := servertest.NewBrowser(t)
		a := app.AuthURL()
		page := bob.SignIn(a.URL, "bob@example.com", password)
		app.Exchange(t, app.Code(t, bob.Post(h.Issuer+"/oauth2/auth", consentForm(t, page, "allow")), a), a)
	})
	t.Run("stays native through updates", func(t *testing.T) {
		regCall(t, "PUT", reg+"/"+id, rat, map[string]any{"client_id": id, "redirect_uris": []string{"https://app.example.com/cb"},
			"token_endpoint_auth_method": "none"}).wantError(t, http.StatusBadRequest, "invalid_redirect_uri")
	})
	if n := dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = 'clients.register' AND actor = 'registration:open' AND target = $1`,
		"client:"+id); n != 1 {
		t.Errorf("%d audit entries of the open registration, want 1", n)
	}
}

// TestRegistration_Management: a client's registration access token reads,
// replaces and deletes that client and no other; a deleted client's
// tokens die with it.
func TestRegistration_Management(t *testing.T) {
	h := servertest.New(t)
	reg := h.Issuer + "/oauth2/register"
	token := initialToken(t, h, time.Hour, 0)
	meta := func(name, redirect string) map[string]any {
		return map[string]any{"client_name": name, "redirect_uris": []string{redirect},
			"grant_types": []string{"authorization_code", "refresh_token", "client_credentials"}, "scope": "openid email"}
	}
	a := regCall(t, "POST", reg, token, meta("A", "https://a.example.com/cb"))
	b := regCall(t, "POST", reg, token, meta("B", "https://b.example.com/cb"))
	if a.Status != http.StatusCreated || b.Status != http.StatusCreated {
		t.Fatalf("registrations: %d, %d", a.Status, b.Status)
	}
	aID, aSecret, aRAT, aURI := a.str("client_id"), a.str("client_secret"), a.str("registration_access_token"), a.str("registration_client_uri")
	bRAT := b.str("registration_access_token")
	operators := h.NewRP("made-by-cli")

	t.Run("read", func(t *testing.T) {
		got := regCall(t, "GET", aURI, aRAT, nil)
		if got.Status != http.StatusOK || got.str("client_id") != aID || got.str("client_name") != "A" || got.str("client_secret") != "" ||
			got.str("registration_access_token") != aRAT {
			t.Fatalf("GET: %d %v", got.Status, got.Body)
		}
	})
	for name, call := range map[string]func() regResponse{
		"read with another client's token": func() regResponse { return regCall(t, "GET", aURI, bRAT, nil) },
		"read without a token":             func() regResponse { return regCall(t, "GET", aURI, "", nil) },
		"read an operator's client":        func() regResponse { return regCall(t, "GET", reg+"/"+operators.ID, aRAT, nil) },
		"read an unknown client":           func() regResponse { return regCall(t, "GET", reg+"/nobody", aRAT, nil) },
		"replace with another client's token": func() regResponse {
			return regCall(t, "PUT", aURI, bRAT, map[string]any{"client_id": aID, "redirect_uris": []string{"https://evil.example.com/cb"}})
		},
		"delete with another client's token": func() regResponse { return regCall(t, "DELETE", aURI, bRAT, nil) },
		"delete an operator's client":        func() regResponse { return regCall(t, "DELETE", reg+"/"+operators.ID, aRAT, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			before := h.Stored(t)
			call().wantError(t, http.StatusUnauthorized, "invalid_token")
			if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
				t.Fatalf("changed the database: %v", changed)
			}
		})
	}

	t.Run("refused replacements", func(t *testing.T) {
		before := h.Stored(t)
		for _, tc := range []struct {
			body map[string]any
			code string
		}{
			{map[string]any{"redirect_uris": []string{"https://a.example.com/new"}}, "invalid_client_metadata"}, // no client_id
			{map[string]any{"client_id": aID, "redirect_uris": []string{"http://a.example.com/new"}}, "invalid_redirect_uri"},
			{map[string]any{"client_id": aID, "redirect_uris": []string{"https://a.example.com/new"}, "token_endpoint_auth_method": "none"}, "invalid_client_metadata"},
			{map[string]any{"client_id": aID, "client_secret": "wrong", "redirect_uris": []string{"https://a.example.com/new"}}, "invalid_client_metadata"},
			{map[string]any{"client_id": aID, "redirect_uris": []string{"https://a.example.com/new"}, "grant_types": []string{"password"}}, "invalid_client_metadata"},
			{map[string]any{"client_id": aID, "redirect_uris": []string{"https://a.example.com/new"}, "scope": "openid admin"}, "invalid_client_metadata"},
		} {
			regCall(t, "PUT", aURI, aRAT, tc.body).wantError(t, http.StatusBadRequest, tc.code)
		}
		if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
			t.Fatalf("refused replacements changed the database: %v", changed)
		}
	})

	cc := clientcredentials.Config{ClientID: aID, ClientSecret: aSecret, TokenURL: h.Issuer + "/oauth2/token", Scopes: []string{"email"}}
	t.Run("replace", func(t *testing.T) {
		got := regCall(t, "PUT", aURI, aRAT, map[string]any{"client_id": aID, "client_secret": aSecret, "client_name": "A2",
			"redirect_uris": []string{"https://a.example.com/new"}, "grant_types": []string{"authorization_code", "client_credentials"},
			"scope": "openid email", "registration_access_token": "ignored"})
		if got.Status != http.StatusOK || got.str("client_name") != "A2" || got.str("registration_access_token") != aRAT {
			t.Fatalf("PUT: %d %v", got.Status, got.Body)
		}
		if uris, _ := got.Body["redirect_uris"].([]any); len(uris) != 1 || uris[0] != "https://a.example.com/new" {
			t.Errorf("redirect_uris = %v", got.Body["redirect_uris"])
		}
		// Full replacement: refresh_token, left out, is gone.
		if grants, _ := got.Body["grant_types"].([]any); len(grants) != 2 {
			t.Errorf("grant_types = %v", got.Body["grant_types"])
		}
		// Nothing rotated: the secret and the registration access token still work.
		if _, err := cc.Token(h.Ctx); err != nil {
			t.Fatalf("the secret stopped working after an update: %v", err)
		}
		if r := regCall(t, "GET", aURI, aRAT, nil); r.Status != http.StatusOK || r.str("client_name") != "A2" {
			t.Fatalf("GET after PUT: %d %v", r.Status, r.Body)
		}
	})

	t.Run("delete", func(t *testing.T) {
		tok, err := cc.Token(h.Ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := regCall(t, "DELETE", aURI, aRAT, nil); got.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %v", got.Status, got.Body)
		}
		for table, sql := range map[string]string{
			"oauth_clients":        `SELECT count(*) FROM oauth_clients WHERE id = $1`,
			"client_registrations": `SELECT count(*) FROM client_registrations WHERE client_id = $1`,
			"oauth_access_tokens":  `SELECT count(*) FROM oauth_access_tokens WHERE client_id = $1`,
		} {
			if n := dbtest.Value[int64](t, h.DB.Pool, sql, aID); n != 0 {
				t.Errorf("%s: %d rows of the deleted client", table, n)
			}
		}
		if in := operators.Introspect(t, tok.AccessToken); in["active"] != false {
			t.Errorf("the deleted client's token is still active: %v", in)
		}
		regCall(t, "GET", aURI, aRAT, nil).wantError(t, http.StatusUnauthorized, "invalid_token")
		if got := regCall(t, "GET", reg+"/"+b.str("client_id"), bRAT, nil); got.Status != http.StatusOK {
			t.Errorf("the other client went too: %d", got.Status)
		}
	})

	t.Run("audited", func(t *testing.T) {
		for _, action := range []string{"clients.register", "clients.update", "clients.delete"} {
			if n := dbtest.Value[int64](t, h.DB.Pool, `SELECT count(*) FROM audit_log WHERE action = $1 AND target = $2`, action, "client:"+aID); n != 1 {
				t.Errorf("%s: %d audit entries, want 1", action, n)
			}
		}
	})
}

// TestRegistration_Concurrent: an initial access token good for two
// registrations registers two clients, however many race for it.
func TestRegistration_Concurrent(t *testing.T) {
	h := servertest.New(t)
	token := initialToken(t, h, time.Hour, 2)
	before := countClients(t, h)
	statuses := make(chan int, 6)
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- regCall(t, "POST", h.Issuer+"/oauth2/register", token,
				map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}}).Status
		}()
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusCreated] != 2 || count[http.StatusUnauthorized] != 4 {
		t.Fatalf("statuses %v, want two 201 and four 401", count)
	}
	if n := countClients(t, h); n != before+2 {
		t.Fatalf("%d clients registered, want 2", n-before)
	}
}

// TestRegistration_OpenThrottled: one address registers ten native
// clients an hour without a wait; the next is answered 429 with
// Retry-After, and a refused registration does not count.
func TestRegistration_OpenThrottled(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.OpenRegistration = registration.OpenNative })
	native := map[string]any{"redirect_uris": []string{"http://127.0.0.1:5000/cb"}, "token_endpoint_auth_method": "none"}
	for range 3 {
		regCall(t, "POST", h.Issuer+"/oauth2/register", "", map[string]any{"redirect_uris": []string{"https://x.example/cb"},
			"token_endpoint_auth_method": "none"}).wantError(t, http.StatusBadRequest, "invalid_redirect_uri")
	}
	for i := range 10 {
		if got := regCall(t, "POST", h.Issuer+"/oauth2/register", "", native); got.Status != http.StatusCreated {
			t.Fatalf("registration %d: %d %v", i+1, got.Status, got.Body)
		}
	}
	before := countClients(t, h)
	got := regCall(t, "POST", h.Issuer+"/oauth2/register", "", native)
	if got.Status != http.StatusTooManyRequests || got.Header.Get("Retry-After") == "" {
		t.Fatalf("11th registration: %d %v (Retry-After %q)", got.Status, got.Body, got.Header.Get("Retry-After"))
	}
	if countClients(t, h) != before {
		t.Fatal("a throttled registration stored a client")
	}
	// An operator's token is not throttled.
	token := initialToken(t, h, time.Hour, 1)
	if got := regCall(t, "POST", h.Issuer+"/oauth2/register", token, native); got.Status != http.StatusCreated {
		t.Fatalf("registration with a token: %d %v", got.Status, got.Body)
	}
}
