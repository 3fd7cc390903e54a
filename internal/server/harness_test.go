package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/users"
)

// harness is one provider instance over real HTTP on a fresh database.
type harness struct {
	t      *testing.T
	srv    *server.Server
	db     *dbtest.DB
	issuer string
	ctx    context.Context
}

const testSecret = "test-server-secret-0123456789-abcdefghijklmnop"

func newHarness(t *testing.T, mutate ...func(*server.Config)) *harness {
	t.Helper()
	d := dbtest.New(t)
	return newInstance(t, d, mutate...)
}

// newInstance starts a provider on an existing database (several instances
// may share one).
func newInstance(t *testing.T, d *dbtest.DB, mutate ...func(*server.Config)) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	cfg := server.Config{Issuer: issuer, Secret: testSecret,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, d.Pool)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); ts.Close() })
	return &harness{t: t, srv: srv, db: d, issuer: issuer, ctx: context.Background()}
}

func (h *harness) createUser(email, password string) users.User {
	h.t.Helper()
	u, err := h.srv.Users.Create(h.ctx, users.NewUser{Email: email, Name: "Test " + email, Password: password})
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// rp is a relying party: a registered client with a callback server that
// records what the provider sends back.
type rp struct {
	h        *harness
	id       string
	secret   string
	callback *httptest.Server
	conf     oauth2.Config
	provider *oidc.Provider
}

func (h *harness) newRP(id string, mutate ...func(*clients.Client)) *rp {
	h.t.Helper()
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "callback reached")
	}))
	h.t.Cleanup(cb.Close)
	c := clients.Client{
		ID: id, Name: "App " + id,
		RedirectURIs:           []string{cb.URL + "/callback"},
		PostLogoutRedirectURIs: []string{cb.URL + "/logged-out"},
		GrantTypes:             []string{"authorization_code", "refresh_token", "client_credentials"},
		Scopes:                 []string{"openid", "profile", "email", "offline_access"},
	}
	for _, m := range mutate {
		m(&c)
	}
	secret, err := h.srv.Clients.Create(h.ctx, c)
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := oidc.NewProvider(h.ctx, h.issuer)
	if err != nil {
		h.t.Fatal(err)
	}
	return &rp{h: h, id: id, secret: secret, callback: cb, provider: p, conf: oauth2.Config{
		ClientID: id, ClientSecret: secret, Endpoint: p.Endpoint(),
		RedirectURL: cb.URL + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}}
}

// browser is a cookie-keeping user agent that follows redirects.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar}}
}

// page is a fetched response with its body read.
type page struct {
	status int
	url    *url.URL
	body   string
	header http.Header
}

func (b *browser) get(u string) page {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	return readPage(b.t, resp)
}

func (b *browser) post(u string, form url.Values) page {
	b.t.Helper()
	resp, err := b.client.PostForm(u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	return readPage(b.t, resp)
}

func readPage(t *testing.T, resp *http.Response) page {
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body), header: resp.Header}
}

var csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no csrf_token on page %s (status %d):\n%s", p.url, p.status, p.body)
	}
	return m[1]
}

func (p page) isLoginForm() bool {
	return p.url.Path == "/login" && strings.Contains(p.body, `autocomplete="current-password"`)
}

// authRequest is one authorization request with PKCE and a nonce.
type authRequest struct {
	state, nonce, verifier string
	url                    string
}

func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *rp) authURL(extra ...oauth2.AuthCodeOption) authRequest {
	a := authRequest{state: randomString(), nonce: randomString(), verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.verifier)}, extra...)
	a.url = r.conf.AuthCodeURL(a.state, opts...)
	return a
}

// signIn drives the password form and returns the page the browser ends on.
func (b *browser) signIn(start, email, password string) page {
	b.t.Helper()
	p := b.get(start)
	if !p.isLoginForm() {
		b.t.Fatalf("expected the login form, got %s (%d):\n%s", p.url, p.status, p.body)
	}
	return b.post(p.url.Scheme+"://"+p.url.Host+"/login", url.Values{
		"csrf_token": {p.csrf(b.t)}, "email": {email}, "password": {password}})
}

// code extracts the authorization code from a callback page, checking state.
func (r *rp) code(t *testing.T, p page, a authRequest) string {
	t.Helper()
	if p.url.Path != "/callback" {
		t.Fatalf("expected the app's callback, got %s (%d):\n%s", p.url, p.status, p.body)
	}
	q := p.url.Query()
	if q.Get("error") != "" {
		t.Fatalf("callback error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != a.state {
		t.Fatalf("state = %q, want %q", q.Get("state"), a.state)
	}
	return q.Get("code")
}

// exchange trades a code for tokens and verifies the ID token.
func (r *rp) exchange(t *testing.T, code string, a authRequest) (*oauth2.Token, *oidc.IDToken, map[string]any) {
	t.Helper()
	tok, err := r.conf.Exchange(r.h.ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.id}).Verify(r.h.ctx, raw)
	if err != nil {
		t.Fatalf("verify id token: %v", err)
	}
	if idt.Nonce != a.nonce {
		t.Fatalf("nonce = %q, want %q", idt.Nonce, a.nonce)
	}
	var claims map[string]any
	idt.Claims(&claims)
	return tok, idt, claims
}

// introspect asks the provider about a token, as this RP.
func (r *rp) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", r.h.issuer+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(r.id, r.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("introspect: status %d: %v", resp.StatusCode, err)
	}
	return out
}
