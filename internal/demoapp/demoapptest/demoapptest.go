// Package demoapptest runs demo apps (package demoapp) against a test
// provider: each registered as a client with its callback, post-logout and
// back-channel logout URIs, and served over real HTTP.
package demoapptest

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/demoapp"
	"github.com/idp/idp/internal/servertest"
)

// App is a running demo app.
type App struct {
	*demoapp.App
	ID  string
	URL string // where the app listens, without a trailing slash
}

// Start registers clientID with h and serves a demo app for it until the
// test ends.
func Start(t testing.TB, h *servertest.Harness, clientID, name string) *App {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := demoapp.Config{Issuer: h.Issuer, ClientID: clientID, PublicURL: "http://" + ln.Addr().String(), Name: name,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.ClientSecret, err = h.Srv.Clients.Create(h.Ctx, clients.Client{
		ID: clientID, Name: name,
		RedirectURIs:                     []string{cfg.CallbackURL()},
		PostLogoutRedirectURIs:           []string{cfg.HomeURL()},
		BackchannelLogoutURI:             cfg.BackchannelLogoutURL(),
		BackchannelLogoutSessionRequired: true,
		GrantTypes:                       []string{"authorization_code"},
		Scopes:                           []string{"openid", "profile", "email"},
	})
	if err != nil {
		t.Fatal(err)
	}
	app, err := demoapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(app)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return &App{App: app, ID: clientID, URL: cfg.PublicURL}
}
