package server_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const password = "correct horse battery staple"

// TestProvider_CodeFlow drives the whole OIDC flow through go-oidc and
// x/oauth2 over real HTTP against a real PostgreSQL.
func TestProvider_CodeFlow(t *testing.T) {
	h := newHarness(t)
	user := h.createUser("alice@example.com", password)
	appA := h.newRP("app-a")
	appB := h.newRP("app-b")
	alice := newBrowser(t)

	// Sign in to app A with the password form.
	a := appA.authURL()
	code := appA.code(t, alice.signIn(a.url, "alice@example.com", password), a)
	tok, idt, claims := appA.exchange(t, code, a)
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
		info, err := appA.provider.UserInfo(h.ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		if info.Subject != user.ID || info.Email != "alice@example.com" {
			t.Errorf("userinfo = %+v", info)
		}
	})

	t.Run("introspection", func(t *testing.T) {
		got := appA.introspect(t, tok.AccessToken)
		if got["active"] != true || got["sub"] != user.ID || got["client_id"] != "app-a" {
			t.Errorf("introspection = %v", got)
		}
	})

	t.Run("sso into a second app without a form", func(t *testing.T) {
		b := appB.authURL()
		p := alice.get(b.url)
		_, _, claimsB := appB.exchange(t, appB.code(t, p, b), b)
		if claimsB["sid"] != sid {
			t.Errorf("sid at app B = %v, want %v", claimsB["sid"], sid)
		}
		var n int
		h.db.Pool.QueryRow(h.ctx, `SELECT count(*) FROM client_sessions WHERE sid = $1`, sid).Scan(&n)
		if n != 2 {
			t.Errorf("client sessions = %d, want 2", n)
		}
	})

	t.Run("refresh rotates and reuse revokes the grant", func(t *testing.T) {
		ts := appA.conf.TokenSource(h.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken})
		fresh, err := ts.Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
			t.Fatal("refresh token was not rotated")
		}
		if appA.introspect(t, fresh.AccessToken)["active"] != true {
			t.Fatal("refreshed access token inactive")
		}
		// Presenting the old refresh token again is reuse: it fails, and
		// the tokens of the whole grant die.
		_, err = appA.conf.TokenSource(h.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("reuse err = %v, want invalid_grant", err)
		}
		if appA.introspect(t, fresh.AccessToken)["active"] != false {
			t.Error("access token of the reused grant is still active")
		}
		if _, err := appA.conf.TokenSource(h.ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); err == nil {
			t.Error("the rotated refresh token of the reused grant still works")
		}
	})

	t.Run("revocation", func(t *testing.T) {
		b := appA.authURL()
		tok2, _, _ := appA.exchange(t, appA.code(t, alice.get(b.url), b), b)
		req, _ := http.NewRequest("POST", h.issuer+"/oauth2/revoke",
			strings.NewReader(url.Values{"token": {tok2.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app-a", appA.secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke status = %d", resp.StatusCode)
		}
		if appA.introspect(t, tok2.AccessToken)["active"] != false {
			t.Error("revoked token still active")
		}
	})

	t.Run("code reuse fails and kills the first exchange's tokens", func(t *testing.T) {
		b := appA.authURL()
		c := appA.code(t, alice.get(b.url), b)
		first, _, _ := appA.exchange(t, c, b)
		if _, err := appA.conf.Exchange(h.ctx, c, oauth2.VerifierOption(b.verifier)); err == nil {
			t.Fatal("second use of a code succeeded")
		}
		if appA.introspect(t, first.AccessToken)["active"] != false {
			t.Error("access token from the reused code is still active")
		}
		if _, err := appA.conf.TokenSource(h.ctx, &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); err == nil {
			t.Error("refresh token from the reused code still works")
		}
	})

	t.Run("prompt=login shows the form despite a session", func(t *testing.T) {
		b := appA.authURL(oauth2.SetAuthURLParam("prompt", "login"))
		p := alice.get(b.url)
		if !p.isLoginForm() {
			t.Fatalf("got %s, want the login form", p.url)
		}
		// Signing in again completes the original request.
		p = alice.post(h.issuer+"/login", url.Values{"csrf_token": {p.csrf(t)},
			"email": {"alice@example.com"}, "password": {password}})
		appA.exchange(t, appA.code(t, p, b), b)
	})

	t.Run("max_age forces re-authentication", func(t *testing.T) {
		if _, err := h.db.Pool.Exec(h.ctx, `UPDATE sso_sessions SET auth_time = auth_time - interval '1 hour'`); err != nil {
			t.Fatal(err)
		}
		b := appA.authURL(oauth2.SetAuthURLParam("max_age", "60"))
		if p := alice.get(b.url); !p.isLoginForm() {
			t.Fatalf("got %s, want the login form", p.url)
		}
		b = appA.authURL(oauth2.SetAuthURLParam("max_age", "86400"))
		appA.code(t, alice.get(b.url), b)
	})

	t.Run("prompt=none without a session returns login_required", func(t *testing.T) {
		stranger := newBrowser(t)
		b := appA.authURL(oauth2.SetAuthURLParam("prompt", "none"))
		p := stranger.get(b.url)
		if p.url.Path != "/callback" || p.url.Query().Get("error") != "login_required" || p.url.Query().Get("state") != b.state {
			t.Fatalf("got %s, want callback with error=login_required", p.url)
		}
	})

	t.Run("login_hint pre-fills the email", func(t *testing.T) {
		b := appA.authURL(oauth2.SetAuthURLParam("login_hint", "bob@example.com"))
		p := newBrowser(t).get(b.url)
		if !p.isLoginForm() || !strings.Contains(p.body, `value="bob@example.com"`) {
			t.Fatalf("login form without the hint:\n%s", p.body)
		}
	})
}

func TestProvider_AuthorizeErrors(t *testing.T) {
	h := newHarness(t)
	app := h.newRP("app")
	a := app.authURL()
	good, _ := url.Parse(a.url)

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
			p := readPage(t, resp)
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
				t.Fatalf("status %d location %q, want 400 and no redirect", p.status, p.header.Get("Location"))
			}
			if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || !strings.Contains(p.body, tc.want) {
				t.Fatalf("error page lacks %q:\n%s", tc.want, p.body)
			}
		})
	}

	t.Run("other errors go back to the app in the spec's format", func(t *testing.T) {
		u := *good
		q := u.Query()
		q.Set("code_challenge_method", "plain")
		u.RawQuery = q.Encode()
		p := newBrowser(t).get(u.String())
		if p.url.Path != "/callback" || p.url.Query().Get("error") != "invalid_request" || p.url.Query().Get("state") != a.state {
			t.Fatalf("got %s, want callback with error=invalid_request", p.url)
		}
	})
}
