// Package demoapp is the demo relying party: a small web application that
// signs people in through the provider with the standard libraries an app
// developer would use (go-oidc v3 and x/oauth2), and shows which provider
// session it is part of.
//
// It owns the app's side of single sign-on and single sign-out: the
// authorization code flow with PKCE (S256), state and nonce; verifying the
// ID token; RP-initiated logout at the provider's end_session_endpoint; and
// a back-channel logout endpoint that verifies logout tokens per OpenID
// Connect Back-Channel Logout 1.0 and ends the local sessions they name.
//
// Local sessions live in memory: good enough for a demo, lost at restart,
// and not shared between replicas — a real app would keep them in its own
// store. The provider's state, by contrast, is all in PostgreSQL.
package demoapp

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{"join": strings.Join}).
	ParseFS(templateFS, "templates/*.html"))

// Config describes one demo app.
type Config struct {
	Issuer       string // the provider's issuer URL
	ClientID     string
	ClientSecret string
	// PublicURL is where browsers reach this app, without a trailing slash,
	// e.g. http://localhost:9001. The app's redirect, post-logout and
	// back-channel logout URIs are derived from it.
	PublicURL string
	Name      string // shown on the pages, e.g. "App A"
	Logger    *slog.Logger
	// HTTP talks to the provider (discovery, JWKS, token endpoint); a client
	// with a 10-second timeout when nil.
	HTTP *http.Client
	Now  func() time.Time
}

// CallbackURL is the redirect URI to register for this app.
func (c Config) CallbackURL() string { return c.PublicURL + "/callback" }

// HomeURL is the post-logout redirect URI to register for this app.
func (c Config) HomeURL() string { return c.PublicURL + "/" }

// BackchannelLogoutURL is the back-channel logout URI to register.
func (c Config) BackchannelLogoutURL() string { return c.PublicURL + "/backchannel-logout" }

// Lifetimes of the in-memory state.
const (
	sessionTTL = 8 * time.Hour
	pendingTTL = 10 * time.Minute
	leeway     = time.Minute
)

// App is the demo relying party, an http.Handler.
type App struct {
	cfg    Config
	mux    *http.ServeMux
	secure bool // cookies get Secure when the app is served over https

	mu       sync.Mutex
	sessions map[string]*session // by cookie value
	pending  map[string]*pending // sign-ins and sign-outs under way, by cookie value
	seenJTI  map[string]time.Time

	discoverMu sync.Mutex
	disc       *discovery // nil until the provider first answered
}

// session is a local sign-in. Ended sessions stay until they are next seen,
// so the page can say why the person is signed out.
type session struct {
	Subject, Email, Name string
	SID                  string
	AMR                  []string
	ACR                  string
	AuthTime             time.Time
	idToken              string // raw, for id_token_hint; never shown or logged
	csrf                 string
	expires              time.Time
	endedBy              string // "" while live
}

// pending is a sign-in (state, nonce, PKCE verifier) or a sign-out (state)
// waiting for the browser to come back from the provider.
type pending struct {
	state, nonce, verifier string
	logout                 bool
	expires                time.Time
}

// New returns the app. It talks to the provider only when first needed, so
// it may start before the provider does.
func New(cfg Config) (*App, error) {
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("demoapp: public URL %q must be an absolute http(s) URL", cfg.PublicURL)
	}
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("demoapp: issuer and client id are required")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.ClientID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &App{cfg: cfg, secure: u.Scheme == "https", mux: http.NewServeMux(),
		sessions: map[string]*session{}, pending: map[string]*pending{}, seenJTI: map[string]time.Time{}}
	static, _ := fs.Sub(staticFS, "static")
	a.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.FS(static))))
	a.mux.HandleFunc("GET /{$}", a.home)
	a.mux.HandleFunc("GET /login", a.login)
	a.mux.HandleFunc("GET /callback", a.callback)
	a.mux.HandleFunc("POST /logout", a.logout)
	a.mux.HandleFunc("POST /backchannel-logout", a.backchannelLogout)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return a, nil
}

// ServeHTTP implements http.Handler, with headers that keep the pages out
// of caches and frames and allow only the app's own stylesheet.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	a.mux.ServeHTTP(w, r)
}

// discovery is what the app learnt from the provider's metadata.
type discovery struct {
	provider   *oidc.Provider
	oauth      oauth2.Config
	verifier   *oidc.IDTokenVerifier
	keys       *oidc.RemoteKeySet
	endSession string
	algs       []string
}

// discover fetches the provider's metadata once it is reachable, and
// remembers it.
func (a *App) discover(ctx context.Context) (*discovery, error) {
	a.discoverMu.Lock()
	defer a.discoverMu.Unlock()
	if a.disc != nil {
		return a.disc, nil
	}
	ctx = oidc.ClientContext(ctx, a.cfg.HTTP)
	p, err := oidc.NewProvider(ctx, a.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("demoapp: discovery: %w", err)
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		JWKS       string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("demoapp: discovery: %w", err)
	}
	if meta.JWKS == "" {
		return nil, errors.New("demoapp: discovery: no jwks_uri")
	}
	if len(meta.Algs) == 0 {
		meta.Algs = []string{oidc.RS256}
	}
	a.disc = &discovery{
		provider: p,
		oauth: oauth2.Config{ClientID: a.cfg.ClientID, ClientSecret: a.cfg.ClientSecret,
			Endpoint: p.Endpoint(), RedirectURL: a.cfg.CallbackURL(),
			Scopes: []string{oidc.ScopeOpenID, "profile", "email"}},
		verifier:   p.Verifier(&oidc.Config{ClientID: a.cfg.ClientID, SupportedSigningAlgs: meta.Algs, Now: a.cfg.Now}),
		keys:       oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), a.cfg.HTTP), meta.JWKS),
		endSession: meta.EndSession,
		algs:       meta.Algs,
	}
	return a.disc, nil
}

// Cookie names carry the client id: browsers scope cookies by host, not
// port, so two demo apps and the provider on localhost share one jar.
func (a *App) cookieName(kind string) string {
	return "demoapp-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, a.cfg.ClientID) + "-" + kind
}

func (a *App) setCookie(w http.ResponseWriter, kind, value string, ttl time.Duration) {
	c := &http.Cookie{Name: a.cookieName(kind), Value: value, Path: "/", HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode, MaxAge: int(ttl.Seconds())}
	if ttl < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

func (a *App) cookie(r *http.Request, kind string) string {
	c, err := r.Cookie(a.cookieName(kind))
	if err != nil {
		return ""
	}
	return c.Value
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// currentSession returns the browser's live session (nil when none) and,
// when its session was ended by the provider since the last visit, why.
// The ended session is forgotten once reported.
func (a *App) currentSession(r *http.Request) (id string, s *session, endedBy string) {
	id = a.cookie(r, "session")
	if id == "" {
		return "", nil, ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s = a.sessions[id]
	switch {
	case s == nil:
		return "", nil, ""
	case s.endedBy != "":
		delete(a.sessions, id)
		return "", nil, s.endedBy
	case a.cfg.Now().After(s.expires):
		delete(a.sessions, id)
		return "", nil, ""
	}
	live := *s // a copy: the caller reads it without the lock
	return id, &live, ""
}

// sweep drops expired state; called with a.mu held on every write, which
// keeps the maps bounded by the traffic of the last few hours.
func (a *App) sweep(now time.Time) {
	for k, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
	for k, p := range a.pending {
		if now.After(p.expires) {
			delete(a.pending, k)
		}
	}
	for k, exp := range a.seenJTI {
		if now.After(exp) {
			delete(a.seenJTI, k)
		}
	}
}
