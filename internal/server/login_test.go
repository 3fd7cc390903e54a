package server_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
)

var csrfValue = regexp.MustCompile(`value="[A-Za-z0-9_-]{43}"`)

func TestLogin_Pages(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")

	t.Run("security headers and markup", func(t *testing.T) {
		p := servertest.NewBrowser(t).Get(app.AuthURL().URL)
		want := map[string]string{
			"Cache-Control":   "no-store",
			"X-Frame-Options": "DENY",
			"Referrer-Policy": "no-referrer",
		}
		for k, v := range want {
			if got := p.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("CSP = %q", csp)
		}
		for _, m := range []string{`autocomplete="username"`, `autocomplete="current-password"`, `<form method="post"`, `<label for="email">`, `<label for="password">`} {
			if !strings.Contains(p.Body, m) {
				t.Errorf("login page lacks %s", m)
			}
		}
	})

	t.Run("forged form", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		br.Get(app.AuthURL().URL)
		p := br.Post(h.Issuer+"/login", url.Values{"csrf_token": {"forged"}, "email": {"alice@example.com"}, "password": {password}})
		if p.Status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", p.Status)
		}
		n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM sso_sessions`)
		if n != 0 {
			t.Fatal("a forged form created a session")
		}
	})

	t.Run("no flow", func(t *testing.T) {
		p := servertest.NewBrowser(t).Post(h.Issuer+"/login", url.Values{"email": {"alice@example.com"}, "password": {password}})
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "sign in again") {
			t.Fatalf("status %d:\n%s", p.Status, p.Body)
		}
	})

	t.Run("unknown account and wrong password read the same", func(t *testing.T) {
		var bodies []string
		for _, email := range []string{"alice@example.com", "nobody@example.com"} {
			p := servertest.NewBrowser(t).SignIn(app.AuthURL().URL, email, "wrong password!")
			if p.Status != http.StatusUnauthorized {
				t.Fatalf("%s: status %d", email, p.Status)
			}
			bodies = append(bodies, strings.ReplaceAll(p.Body, email, "EMAIL"))
		}
		strip := func(s string) string { return csrfValue.ReplaceAllString(s, "") }
		if strip(bodies[0]) != strip(bodies[1]) {
			t.Fatal("unknown account and wrong password got different pages")
		}
	})

	t.Run("wrong passwords are throttled", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		a := app.AuthURL()
		var p servertest.Page
		for range 6 {
			p = br.SignIn(a.URL, "alice@example.com", "wrong password!")
		}
		if p.Status != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" || !strings.Contains(p.Body, "Wait") {
			t.Fatalf("after 6 failures: %d, Retry-After %q", p.Status, p.Header.Get("Retry-After"))
		}
		// Even the right password waits: the delay is per account.
		if p = br.SignIn(a.URL, "alice@example.com", password); p.Status != http.StatusTooManyRequests {
			t.Fatalf("right password during the delay: %d", p.Status)
		}
	})
}
