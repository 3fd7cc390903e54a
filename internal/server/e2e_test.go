package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"

	"github.com/idp/idp/internal/servertest"
)

const password = "correct horse battery staple"

// TestProvider_CodeFlow drives the whole OIDC flow through go-oidc and
// x/oauth2 over real HTTP against a real PostgreSQL.
func TestProvider_CodeFlow(t *testing.T) {
	h := servertest.New(t)
	user := h.CreateUser("alice@example.com", password)
	appA := h.NewRP("app-a")
	appB := h.NewRP("app-b")
	alice := servertest.NewBrowser(t)

	// Sign in to app A with the password form.
	a := appA.AuthURL()
	code := appA.Code(t, alice.SignIn(a.URL, "alice@example.com", password), a)
	tok, idt, claims := appA.Exchange(t, code, a)
	sid, _ := claims["sid"].(string)

	t.Run("id token", func(t *testing.T) {
		if idt.Subject != user.ID {
			t.Errorf("sub = %q, want %q", idt.Subject, user.ID)
		}
		if sid == "" {
			t.Error("no sid claim")
		}
		if _, ok := claims["auth_time"]; !ok {
			t.Error("no auth_time claim")
		}
		if amr, _ := claims["amr"].([]any); !slices.Contains(amr, any("pwd")) {
			t.Errorf("amr = %v, want pwd", claims["amr"])
		}
		if claims["email"] != "alice@example.com" {
			t.Errorf("email = %v", claims["email"])
		}
	})

	t.Run("userinfo", func(t *testing.T) {
		info, err := appA.Provider.UserInfo(h.Ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		if info.Subject != user.ID || info.Email != "alice@example.com" {
			t.Errorf("userinfo = %+v", info)
		}
		// POST works too; a refresh token is not a bearer token.
		for token, want := range map[string]int{tok.AccessToken: http.StatusOK, tok.RefreshToken: http.StatusUnauthorized} {
			req, _ := http.NewRequest("POST", h.Issuer+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("POST /userinfo: status %d, want %d", resp.StatusCode, want)
			}
		}
	})

	t.Run("introspection", func(t *testing.T) {
		got := appA.Introspect(t, tok.AccessToken)
		if got["active"] != true || got["sub"] != user.ID || got["client_id"] != "app-a" {
			t.Errorf("introspection = %v", got)
		}
	})

	t.Run("sso into a second app without a form", func(t *testing.T) {
		b := appB.AuthURL()
		p := alice.Get(b.URL)
		_, _, claimsB := appB.Exchange(t, appB.Code(t, p, b), b)
		if claimsB["sid"] != sid {
			t.Errorf("sid at app B = %v, want %v", claimsB["sid"], sid)
		}
		n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM client_sessions WHERE sid = $1`, sid)
		if n != 2 {
			t.Errorf("client sessions = %d, want 2", n)
		}
	})

	t.Run("refresh rotates and reuse revokes the grant", func(t *testing.T) {
		ts := appA.Conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: tok.RefreshToken})
		fresh, err := ts.Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
			t.Fatal("refresh token was not rotated")
		}
		if appA.Introspect(t, fresh.AccessToken)["active"] != true {
			t.Fatal("refreshed access token inactive")
		}
		// Presenting the old refresh token again is reuse: it fails, and
		// the tokens of the whole grant die.
		_, err = appA.Conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("reuse err = %v, want invalid_grant", err)
		}
		if appA.Introspect(t, fresh.AccessToken)["active"] != false {
			t.Error("access token of the reused grant is still active")
		}
		if _, err := appA.Conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); err == nil {
			t.Error("the rotated refresh token of the reused grant still works")
		}
	})

	t.Run("revocation", func(t *testing.T) {
		b := appA.AuthURL()
		tok2, _, _ := appA.Exchange(t, appA.Code(t, alice.Get(b.URL), b), b)
		req, _ := http.NewRequest("POST", h.Issuer+"/oauth2/revoke",
			strings.NewReader(url.Values{"token": {tok2.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app-a", appA.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke status = %d", resp.StatusCode)
		}
		if appA.Introspect(t, tok2.AccessToken)["active"] != false {
			t.Error("revoked token still active")
		}
	})

	t.Run("code reuse fails and kills the first exchange's tokens", func(t *testing.T) {
		b := appA.AuthURL()
		c := appA.Code(t, alice.Get(b.URL), b)
		first, _, _ := appA.Exchange(t, c, b)
		if _, err := appA.Conf.Exchange(h.Ctx, c, oauth2.VerifierOption(b.Verifier)); err == nil {
			t.Fatal("second use of a code succeeded")
		}
		if appA.Introspect(t, first.AccessToken)["active"] != false {
			t.Error("access token from the reused code is still active")
		}
		if _, err := appA.Conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); err == nil {
			t.Error("refresh token from the reused code still works")
		}
	})

	t.Run("prompt=login shows the form despite a session", func(t *testing.T) {
		b := appA.AuthURL(oauth2.SetAuthURLParam("prompt", "login"))
		p := alice.Get(b.URL)
		if !p.IsLoginForm() {
			t.Fatalf("got %s, want the login form", p.URL)
		}
		// Signing in again completes the original request.
		p = alice.Post(h.Issuer+"/login", url.Values{"csrf_token": {p.CSRF(t)},
			"email": {"alice@example.com"}, "password": {password}})
		appA.Exchange(t, appA.Code(t, p, b), b)
	})

	t.Run("max_age forces re-authentication", func(t *testing.T) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE sso_sessions SET auth_time = auth_time - interval '1 hour'`); err != nil {
			t.Fatal(err)
		}
		b := appA.AuthURL(oauth2.SetAuthURLParam("max_age", "60"))
		if p := alice.Get(b.URL); !p.IsLoginForm() {
			t.Fatalf("got %s, want the login form", p.URL)
		}
		b = appA.AuthURL(oauth2.SetAuthURLParam("max_age", "86400"))
		appA.Code(t, alice.Get(b.URL), b)
	})

	t.Run("prompt=none without a session returns login_required", func(t *testing.T) {
		stranger := servertest.NewBrowser(t)
		b := appA.AuthURL(oauth2.SetAuthURLParam("prompt", "none"))
		p := stranger.Get(b.URL)
		if p.URL.Path != "/callback" || p.URL.Query().Get("error") != "login_required" || p.URL.Query().Get("state") != b.State {
			t.Fatalf("got %s, want callback with error=login_required", p.URL)
		}
	})

	t.Run("login_hint pre-fills the email", func(t *testing.T) {
		b := appA.AuthURL(oauth2.SetAuthURLParam("login_hint", "bob@example.com"))
		p := servertest.NewBrowser(t).Get(b.URL)
		if !p.IsLoginForm() || !strings.Contains(p.Body, `value="bob@example.com"`) {
			t.Fatalf("login form without the hint:\n%s", p.Body)
		}
	})
}

func TestProvider_AuthorizeErrors(t *testing.T) {
	h := servertest.New(t)
	app := h.NewRP("app")
	a := app.AuthURL()
	good, _ := url.Parse(a.URL)

	cases := []struct {
		name   string
		mutate func(q url.Values)
		want   string // substring of the error page
	}{
		{"unregistered redirect uri", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/callback") }, "not registered"},
		{"redirect uri differing only in port", func(q url.Values) {
			u, _ := url.Parse(q.Get("redirect_uri"))
			u.Host = "127.0.0.1:1"
			q.Set("redirect_uri", u.String())
		}, "not registered"},
		{"redirect uri with extra path", func(q url.Values) { q.Set("redirect_uri", q.Get("redirect_uri")+"/x") }, "not registered"},
		{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }, "not registered"},
		{"missing client", func(q url.Values) { q.Del("client_id") }, "not registered"},
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := *good
			q := u.Query()
			tc.mutate(q)
			u.RawQuery = q.Encode()
			resp, err := noRedirect.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			p := servertest.ReadPage(t, resp)
			if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" {
				t.Fatalf("status %d location %q, want 400 and no redirect", p.Status, p.Header.Get("Location"))
			}
			if !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") || !strings.Contains(p.Body, tc.want) {
				t.Fatalf("error page lacks %q:\n%s", tc.want, p.Body)
			}
		})
	}

	t.Run("public clients must use PKCE", func(t *testing.T) {
		pub := h.NewRP("spa", func(c *clients.Client) {
			c.Public = true
			c.GrantTypes = []string{"authorization_code", "refresh_token"}
		})
		u, _ := url.Parse(pub.Conf.AuthCodeURL("state-1234567890")) // no code_challenge
		p := servertest.NewBrowser(t).Get(u.String())
		if p.URL.Path != "/callback" || p.URL.Query().Get("error") != "invalid_request" {
			t.Fatalf("got %s, want callback with error=invalid_request", p.URL)
		}
	})

	t.Run("other errors go back to the app in the spec's format", func(t *testing.T) {
		u := *good
		q := u.Query()
		q.Set("code_challenge_method", "plain")
		u.RawQuery = q.Encode()
		p := servertest.NewBrowser(t).Get(u.String())
		if p.URL.Path != "/callback" || p.URL.Query().Get("error") != "invalid_request" || p.URL.Query().Get("state") != a.State {
			t.Fatalf("got %s, want callback with error=invalid_request", p.URL)
		}
	})
}

func TestProvider_ClientAuthAndAlgorithms(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	app := h.NewRP("app")

	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		t.Run(fmt.Sprintf("client_credentials with auth style %d", style), func(t *testing.T) {
			cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: app.Secret, TokenURL: h.Issuer + "/oauth2/token",
				Scopes: []string{"profile"}, AuthStyle: style}
			tok, err := cc.Token(h.Ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := app.Introspect(t, tok.AccessToken)
			if got["active"] != true || got["scope"] != "profile" {
				t.Fatalf("introspection = %v", got)
			}
		})
	}

	t.Run("wrong secret", func(t *testing.T) {
		cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: "wrong", TokenURL: h.Issuer + "/oauth2/token"}
		if _, err := cc.Token(h.Ctx); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("err = %v, want invalid_client", err)
		}
	})

	t.Run("ES256 ID tokens for a client that asks", func(t *testing.T) {
		es := h.NewRP("es-app", func(c *clients.Client) { c.IDTokenAlg = "ES256" })
		a := es.AuthURL()
		p := servertest.NewBrowser(t).SignIn(a.URL, "alice@example.com", password)
		tok, _, _ := es.Exchange(t, es.Code(t, p, a), a)
		raw := tok.Extra("id_token").(string)
		parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("ID token is not ES256: %v", err)
		}
		if parsed.Headers[0].KeyID == "" {
			t.Fatal("no kid in the ID token header")
		}
	})
}
