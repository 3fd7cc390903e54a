// Package servertest runs real provider instances for tests: over real HTTP,
// on a fresh PostgreSQL database, with relying parties that use go-oidc and
// x/oauth2, and a cookie-keeping browser that follows redirects.
package servertest

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
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/users"
)

// harness is one provider instance over real HTTP on a fresh database.
type Harness struct {
	T      testing.TB
	Srv    *server.Server
	DB     *dbtest.DB
	Issuer string // the configured issuer
	URL    string // where this instance listens (the issuer unless overridden)
	Ctx    context.Context

	stopBackground func()
	storedSQL      string // Stored's query, built on first use
}

const testSecret = "test-server-secret-0123456789-abcdefghijklmnop"

// New starts an instance on a fresh database.
func New(t testing.TB, mutate ...func(*server.Config)) *Harness {
	t.Helper()
	d := dbtest.New(t)
	return NewInstance(t, d, mutate...)
}

// NewInstance starts a provider on an existing database, with its own
// connection pool, as a separate process would: several instances may share
// one database.
func NewInstance(t testing.TB, d *dbtest.DB, mutate ...func(*server.Config)) *Harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	// The apps of the tests listen on loopback.
	cfg := server.Config{Issuer: issuer, Secret: testSecret, AllowPrivateBackchannel: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	pool, err := db.Open(context.Background(), d.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	srv, err := server.New(context.Background(), cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	h := &Harness{T: t, Srv: srv, DB: d, Issuer: cfg.Issuer, Ctx: context.Background(), URL: issuer}
	h.StartBackground()
	t.Cleanup(func() { h.StopBackground(); ts.Close() })
	return h
}

// StartBackground runs the instance's background work (logout delivery,
// janitor) until StopBackground.
func (h *Harness) StartBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Srv.Run(ctx) }()
	h.stopBackground = func() { cancel(); <-done }
}

// StopBackground stops the background work, as a stopped process would;
// unfinished work stays in PostgreSQL.
func (h *Harness) StopBackground() {
	if h.stopBackground != nil {
		h.stopBackground()
		h.stopBackground = nil
	}
}

func (h *Harness) CreateUser(email, password string) users.User {
	h.T.Helper()
	u, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: email, Name: "Test " + email, Password: password})
	if err != nil {
		h.T.Fatal(err)
	}
	return u
}

// OwnChanges counts the audit entries of action that userID made on their
// own account.
func (h *Harness) OwnChanges(userID, action string) int {
	h.T.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM audit_log WHERE actor = $1 AND action = $2 AND target = $3`,
		audit.User(userID), action, userID).Scan(&n); err != nil {
		h.T.Fatal(err)
	}
	return n
}

// rp is a relying party: a registered client with a callback server that
// records what the provider sends back.
type RP struct {
	H        *Harness
	ID       string
	Secret   string
	Callback *httptest.Server
	Conf     oauth2.Config
	Provider *oidc.Provider
}

func (h *Harness) NewRP(id string, mutate ...func(*clients.Client)) *RP {
	h.T.Helper()
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "callback reached")
	}))
	h.T.Cleanup(cb.Close)
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
	secret, err := h.Srv.Clients.Create(h.Ctx, c)
	if err != nil {
		h.T.Fatal(err)
	}
	p, err := oidc.NewProvider(h.Ctx, h.Issuer)
	if err != nil {
		h.T.Fatal(err)
	}
	return &RP{H: h, ID: id, Secret: secret, Callback: cb, Provider: p, Conf: oauth2.Config{
		ClientID: id, ClientSecret: secret, Endpoint: p.Endpoint(),
		RedirectURL: cb.URL + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}}
}

// browser is a cookie-keeping user agent that follows redirects.
type Browser struct {
	T      testing.TB
	Client *http.Client
}

func NewBrowser(t testing.TB) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{T: t, Client: &http.Client{Jar: jar}}
}

// page is a fetched response with its body read.
type Page struct {
	Status int
	URL    *url.URL
	Body   string
	Header http.Header
}

func (b *Browser) Get(u string) Page {
	b.T.Helper()
	resp, err := b.Client.Get(u)
	if err != nil {
		b.T.Fatal(err)
	}
	return ReadPage(b.T, resp)
}

func (b *Browser) Post(u string, form url.Values) Page {
	b.T.Helper()
	resp, err := b.Client.PostForm(u, form)
	if err != nil {
		b.T.Fatal(err)
	}
	return ReadPage(b.T, resp)
}

func ReadPage(t testing.TB, resp *http.Response) Page {
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Page{Status: resp.StatusCode, URL: resp.Request.URL, Body: string(body), Header: resp.Header}
}

var csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func (p Page) CSRF(t testing.TB) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no csrf_token on page %s (status %d):\n%s", p.URL, p.Status, p.Body)
	}
	return m[1]
}

func (p Page) IsLoginForm() bool {
	return p.URL.Path == "/login" && strings.Contains(p.Body, `autocomplete="current-password"`)
}

// AuthRequest is one authorization request with PKCE and a nonce.
type AuthRequest struct {
	State, Nonce, Verifier string
	URL                    string
}

func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *RP) AuthURL(extra ...oauth2.AuthCodeOption) AuthRequest {
	a := AuthRequest{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(a.Nonce), oauth2.S256ChallengeOption(a.Verifier)}, extra...)
	a.URL = r.Conf.AuthCodeURL(a.State, opts...)
	return a
}

// signIn drives the password form and returns the page the browser ends on.
func (b *Browser) SignIn(start, email, password string) Page {
	b.T.Helper()
	p := b.Get(start)
	if !p.IsLoginForm() {
		b.T.Fatalf("expected the login form, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	return b.Post(p.URL.Scheme+"://"+p.URL.Host+"/login", url.Values{
		"csrf_token": {p.CSRF(b.T)}, "email": {email}, "password": {password}})
}

// code extracts the authorization code from a callback Page, checking state.
func (r *RP) Code(t testing.TB, p Page, a AuthRequest) string {
	t.Helper()
	if p.URL.Path != "/callback" {
		t.Fatalf("expected the app's callback, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	q := p.URL.Query()
	if q.Get("error") != "" {
		t.Fatalf("callback error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != a.State {
		t.Fatalf("state = %q, want %q", q.Get("state"), a.State)
	}
	return q.Get("code")
}

// exchange trades a code for tokens and verifies the ID token.
func (r *RP) Exchange(t testing.TB, code string, a AuthRequest) (*oauth2.Token, *oidc.IDToken, map[string]any) {
	t.Helper()
	tok, err := r.Conf.Exchange(r.H.Ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.Provider.Verifier(&oidc.Config{ClientID: r.ID}).Verify(r.H.Ctx, raw)
	if err != nil {
		t.Fatalf("verify id token: %v", err)
	}
	if idt.Nonce != a.Nonce {
		t.Fatalf("nonce = %q, want %q", idt.Nonce, a.Nonce)
	}
	var claims map[string]any
	idt.Claims(&claims)
	return tok, idt, claims
}

// introspect asks the provider about a token, as this RP.
func (r *RP) Introspect(t testing.TB, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", r.H.Issuer+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(r.ID, r.Secret)
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
