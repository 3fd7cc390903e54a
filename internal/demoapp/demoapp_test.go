package demoapp_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"html"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

const (
	email    = "ada@example.com"
	password = "correct horse battery staple"
)

var sidRe = regexp.MustCompile(`<code id="sid">([^<]+)</code>`)

// signedIn checks that p is the app's home page for a signed-in person and
// returns the sid it shows.
func signedIn(t *testing.T, app *demoapptest.App, p servertest.Page) string {
	t.Helper()
	if p.Status != http.StatusOK || !strings.HasPrefix(p.URL.String(), app.URL+"/") || !strings.Contains(p.Body, `id="signed-in"`) {
		t.Fatalf("%s: expected the signed-in home page, got %s (%d):\n%s", app.ID, p.URL, p.Status, p.Body)
	}
	if !strings.Contains(p.Body, `<strong id="email">`+email+`</strong>`) {
		t.Errorf("%s: home page does not show %s:\n%s", app.ID, email, p.Body)
	}
	m := sidRe.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("%s: home page shows no sid:\n%s", app.ID, p.Body)
	}
	return m[1]
}

func signedOut(t *testing.T, app *demoapptest.App, p servertest.Page, notice string) {
	t.Helper()
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="signed-out"`) {
		t.Fatalf("%s: expected the signed-out home page, got %s (%d):\n%s", app.ID, p.URL, p.Status, p.Body)
	}
	if !strings.Contains(html.UnescapeString(p.Body), notice) {
		t.Errorf("%s: signed-out page lacks the notice %q:\n%s", app.ID, notice, p.Body)
	}
}

// TestApp_SingleSignOnAndOut drives two demo apps with a plain HTTP
// browser: sign in at A with the password, reach B without a form under the
// same sid, sign out at A through the provider, and see B's session end by
// back-channel logout.
func TestApp_SingleSignOnAndOut(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser(email, password)
	a := demoapptest.Start(t, h, "app-a", "App A")
	b := demoapptest.Start(t, h, "app-b", "App B")
	br := servertest.NewBrowser(t)

	signedOut(t, a, br.Get(a.URL+"/"), "")
	sid := signedIn(t, a, br.SignIn(a.URL+"/login", email, password))
	p := br.Get(b.URL + "/login")
	if got := signedIn(t, b, p); got != sid {
		t.Fatalf("App B is in provider session %q, App A in %q: want one SSO session", got, sid)
	}
	if a.Sessions(sid) != 1 || b.Sessions(sid) != 1 {
		t.Fatalf("local sessions for sid: A %d, B %d; want 1 each", a.Sessions(sid), b.Sessions(sid))
	}

	home := br.Get(a.URL + "/")
	p = br.Post(a.URL+"/logout", url.Values{"csrf_token": {home.CSRF(t)}})
	if p.URL.Query().Get("state") == "" {
		t.Errorf("the provider returned to %s without the state", p.URL)
	}
	signedOut(t, a, p, "You are signed out of App A and of the identity provider.")

	deadline := time.Now().Add(10 * time.Second)
	for b.Sessions(sid) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("App B still holds its session 10 s after the sign-out at App A")
		}
		time.Sleep(20 * time.Millisecond)
	}
	signedOut(t, b, br.Get(b.URL+"/"), "The identity provider ended your session here (back-channel logout).")
	// Signing in again needs the password: the SSO session is gone.
	if p := br.Get(a.URL + "/login"); !p.IsLoginForm() {
		t.Errorf("after sign-out, App A's sign-in reached %s, want the password form", p.URL)
	}
}

func TestApp_SignOutNeedsCSRF(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser(email, password)
	a := demoapptest.Start(t, h, "app-a", "App A")
	br := servertest.NewBrowser(t)
	sid := signedIn(t, a, br.SignIn(a.URL+"/login", email, password))

	p := br.Post(a.URL+"/logout", url.Values{"csrf_token": {"forged"}})
	if p.Status != http.StatusForbidden || p.URL.Host != strings.TrimPrefix(a.URL, "http://") {
		t.Errorf("sign-out with a forged token: %s (%d), want 403 at the app", p.URL, p.Status)
	}
	if a.Sessions(sid) != 1 {
		t.Errorf("a forged sign-out ended the session")
	}
}

func TestApp_CallbackRejects(t *testing.T) {
	h := servertest.New(t)
	a := demoapptest.Start(t, h, "app-a", "App A")
	for _, tc := range []struct {
		name  string
		start bool // begin a sign-in first, so a pending state exists
		query url.Values
		want  string
	}{
		{"no sign-in started", false, url.Values{"state": {"x"}, "code": {"y"}}, "This sign-in was not started here"},
		{"wrong state", true, url.Values{"state": {"forged"}, "code": {"y"}}, "This sign-in was not started here"},
		{"provider error", true, url.Values{"error": {"access_denied"}, "error_description": {"no <b>way</b>"}}, "did not sign you in (access_denied). It said: no <b>way</b>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := servertest.NewBrowser(t)
			br.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			q := tc.query
			if tc.start {
				p := br.Get(a.URL + "/login")
				if p.Status != http.StatusFound {
					t.Fatalf("/login: %d, want a redirect to the provider", p.Status)
				}
				loc, _ := url.Parse(p.Header.Get("Location"))
				for _, k := range []string{"state", "nonce", "code_challenge"} {
					if loc.Query().Get(k) == "" {
						t.Errorf("authorization request lacks %s: %s", k, loc)
					}
				}
				if m := loc.Query().Get("code_challenge_method"); m != "S256" {
					t.Errorf("code_challenge_method = %q, want S256", m)
				}
				if tc.query.Get("error") != "" {
					q = maps.Clone(tc.query)
					q.Set("state", loc.Query().Get("state"))
				}
			}
			p := br.Get(a.URL + "/callback?" + q.Encode())
			if p.Status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(p.Body), tc.want) {
				t.Errorf("callback: %d, want 400 saying %q:\n%s", p.Status, tc.want, p.Body)
			}
			if strings.Contains(p.Body, "<b>") {
				t.Error("the provider's error description was not escaped")
			}
		})
	}
}

// TestApp_BackchannelLogout posts logout tokens, each wrong in one way, to
// the app: it must refuse each with 400 and a JSON error and keep the
// session, then accept valid ones (by sid, by sub) and end it.
func TestApp_BackchannelLogout(t *testing.T) {
	h := servertest.New(t)
	user := h.CreateUser(email, password)
	a := demoapptest.Start(t, h, "app-a", "App A")

	kid, key, err := h.Srv.Keys.Signer("RS256")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	sign := func(t *testing.T, k crypto.Signer, kid string, typ string, claims map[string]any) string {
		t.Helper()
		opts := &jose.SignerOptions{}
		if typ != "" {
			opts = opts.WithType(jose.ContentType(typ))
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: cryptosigner.Opaque(k), KeyID: kid}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var sid string
	claims := func(change func(c map[string]any)) map[string]any {
		now := time.Now()
		c := map[string]any{
			"iss": h.Issuer, "aud": "app-a", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": rand.Text(), "sub": user.ID, "sid": sid,
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
		}
		if change != nil {
			change(c)
		}
		return c
	}
	post := func(t *testing.T, token string) (int, map[string]string) {
		t.Helper()
		resp, err := http.PostForm(a.URL+"/backchannel-logout", url.Values{"logout_token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	signIn := func(t *testing.T) {
		t.Helper()
		sid = signedIn(t, a, servertest.NewBrowser(t).SignIn(a.URL+"/login", email, password))
	}
	signIn(t)

	replayed := sign(t, key, kid, "logout+jwt", claims(nil))
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(must(json.Marshal(claims(nil)))) + "."
	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
		want  string // in error_description
	}{
		{"missing", func(*testing.T) string { return "" }, "logout_token is required"},
		{"not a JWT", func(*testing.T) string { return "garbage" }, "not a compact JWS"},
		{"alg none", func(*testing.T) string { return unsigned }, "not a compact JWS"},
		{"unknown key", func(t *testing.T) string { return sign(t, stranger, kid, "logout+jwt", claims(nil)) }, "signature"},
		{"no typ", func(t *testing.T) string { return sign(t, key, kid, "", claims(nil)) }, "typ"},
		{"ID token typ", func(t *testing.T) string { return sign(t, key, kid, "JWT", claims(nil)) }, "typ"},
		{"wrong issuer", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" }))
		}, "issuer"},
		{"wrong audience", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { c["aud"] = "app-b" }))
		}, "audience"},
		{"expired", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) {
				c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-58*time.Minute).Unix()
			}))
		}, "expired"},
		{"no iat", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "iat") }))
		}, "no iat"},
		{"no exp", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "exp") }))
		}, "no exp"},
		{"no jti", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "jti") }))
		}, "no jti"},
		{"neither sub nor sid", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "sub"); delete(c, "sid") }))
		}, "neither sub nor sid"},
		{"nonce", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { c["nonce"] = "n" }))
		}, "nonce"},
		{"no events", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "events") }))
		}, "events"},
		{"other event", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) {
				c["events"] = map[string]any{"https://example.com/other": map[string]any{}}
			}))
		}, "events"},
		{"event not an object", func(t *testing.T) string {
			return sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) {
				c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": "yes"}
			}))
		}, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, tc.token(t))
			if status != http.StatusBadRequest || body["error"] != "invalid_request" || !strings.Contains(body["error_description"], tc.want) {
				t.Errorf("got %d %v, want 400 invalid_request mentioning %q", status, body, tc.want)
			}
			if a.Sessions(sid) != 1 {
				t.Fatal("a refused logout token ended the session")
			}
		})
	}

	t.Run("valid, by sid", func(t *testing.T) {
		if status, body := post(t, replayed); status != http.StatusOK {
			t.Fatalf("got %d %v, want 200", status, body)
		}
		if a.Sessions(sid) != 0 {
			t.Error("the session is still live")
		}
	})
	t.Run("replayed", func(t *testing.T) {
		signIn(t)
		if status, body := post(t, replayed); status != http.StatusBadRequest || !strings.Contains(body["error_description"], "jti") {
			t.Errorf("got %d %v, want 400 for a replayed jti", status, body)
		}
		if a.Sessions(sid) != 1 {
			t.Error("a replayed token ended the new session")
		}
	})
	t.Run("valid, by sub only", func(t *testing.T) {
		if status, body := post(t, sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { delete(c, "sid") }))); status != http.StatusOK {
			t.Fatalf("got %d %v, want 200", status, body)
		}
		if a.Sessions(sid) != 0 {
			t.Error("the session is still live")
		}
	})
	t.Run("valid, no matching session", func(t *testing.T) {
		if status, body := post(t, sign(t, key, kid, "logout+jwt", claims(func(c map[string]any) { c["sid"] = "unknown" }))); status != http.StatusOK {
			t.Errorf("got %d %v, want 200", status, body)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
