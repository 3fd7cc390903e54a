package admin_test

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// authParamRe is one auth-param of a challenge (RFC 7235 §2.1): a token,
// "=", and a token or a quoted string.
var authParamRe = regexp.MustCompile(`^\s*([A-Za-z0-9_.-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)`)

// parseChallenge splits a WWW-Authenticate value holding one challenge into
// its scheme and auth-params, failing t on anything it cannot parse.
func parseChallenge(t *testing.T, v string) (scheme string, params map[string]string) {
	t.Helper()
	scheme, rest, _ := strings.Cut(v, " ")
	params = map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		m := authParamRe.FindStringSubmatchIndex(rest)
		if m == nil {
			t.Fatalf("WWW-Authenticate %q: cannot parse from %q", v, rest)
		}
		name := rest[m[2]:m[3]]
		if _, dup := params[name]; dup {
			t.Fatalf("WWW-Authenticate %q: %s twice", v, name)
		}
		if m[4] >= 0 {
			params[name] = regexp.MustCompile(`\\(.)`).ReplaceAllString(rest[m[4]:m[5]], "$1")
		} else {
			params[name] = rest[m[6]:m[7]]
		}
		rest = rest[m[1]:]
	}
	return scheme, params
}

// wantStepUpChallenge fails t unless r is RFC 9470's answer: 401,
// insufficient_user_authentication in the body and in a Bearer challenge
// with a description and exactly the auth-params want names.
func wantStepUpChallenge(t *testing.T, r response, want map[string]string) {
	t.Helper()
	r.wantError(t, http.StatusUnauthorized, "insufficient_user_authentication")
	scheme, params := parseChallenge(t, r.header.Get("WWW-Authenticate"))
	if scheme != "Bearer" || params["error"] != "insufficient_user_authentication" || params["error_description"] == "" {
		t.Fatalf("challenge %s %v, want Bearer with error insufficient_user_authentication and a description", scheme, params)
	}
	for _, name := range []string{"acr_values", "max_age"} {
		if params[name] != want[name] {
			t.Errorf("challenge %s = %q, want %q (all: %v)", name, params[name], want[name], params)
		}
	}
}

// grantedScopes is the scope the token response granted.
func grantedScopes(tok *oauth2.Token) []string {
	s, _ := tok.Extra("scope").(string)
	return strings.Fields(s)
}

// TestAPI_SignInStrength: the admin API accepts a person's token only from
// a two-factor sign-in of the last hour, and otherwise answers with RFC
// 9470's challenge, which the app can meet: acr_values steps the session
// up (password first), max_age signs in again.
func TestAPI_SignInStrength(t *testing.T) {
	// The clock starts hours in the past and moves forward: fosite refuses
	// an auth_time in the real future. Mid-step, so codes are not on an edge.
	clock := clocktest.New(time.Now().Add(-3 * time.Hour).Truncate(30 * time.Second).Add(15 * time.Second))
	h := servertest.New(t, func(c *server.Config) { c.Now = clock.Now })
	ctx := h.Ctx
	ada, err := h.Srv.Users.Create(ctx, users.NewUser{Email: "ada@example.com", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	adaPhone := h.EnrollTOTP(ada)
	pat, err := h.Srv.Users.Create(ctx, users.NewUser{Email: "pat@example.com", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	console := withScopes(h.NewRP("console", func(c *clients.Client) { c.Scopes = append(c.Scopes, admin.Scope) }), admin.Scope)
	const path = "/admin/api/users?email=ada@example.com"

	adaBrowser := servertest.NewBrowser(t)
	adaTok := signInWithCode(t, adaBrowser, console, ada.Email, adaPhone)
	patBrowser := servertest.NewBrowser(t)
	patTok := signIn(t, patBrowser, console, pat.Email)

	t.Run("two factors, just now", func(t *testing.T) {
		var got admin.Account
		call(t, h, "GET", path, bearer(adaTok.AccessToken)).want(t, http.StatusOK, &got)
		if got.ID != ada.ID {
			t.Fatalf("found %+v, want ada", got)
		}
	})

	t.Run("password only", func(t *testing.T) {
		// The authorization endpoint left the scope out...
		if scopes := grantedScopes(patTok); len(scopes) == 0 || strings.Contains(" "+strings.Join(scopes, " ")+" ", " admin ") {
			t.Fatalf("a password-only administrator was granted %v, want the scopes asked for but admin", scopes)
		}
		// ...and the API says what sign-in would get it.
		before := auditCount(t, h)
		wantStepUpChallenge(t, call(t, h, "DELETE", "/admin/api/users/"+ada.ID+"/sessions", bearer(patTok.AccessToken)),
			map[string]string{"acr_values": sessions.ACRMFA})
		if after := auditCount(t, h); after != before || liveSessions(t, h, ada.ID) != 1 {
			t.Fatal("a refused request changed something")
		}
	})

	t.Run("acr_values steps the session up, password first", func(t *testing.T) {
		a := console.AuthURL(oauth2.SetAuthURLParam("acr_values", sessions.ACRMFA))
		p := patBrowser.Get(a.URL)
		servertest.WantPage(t, p, "/login", http.StatusOK, "Confirm it’s you")
		p = patBrowser.Post(h.URL+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "password": {password}})
		// pat has no second factor yet: the step-up enrolls one.
		secret := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(p.Body)
		if p.URL.Path != "/login/enroll" || secret == nil {
			t.Fatalf("after the password: %s (%d), want the enrollment page:\n%s", p.URL, p.Status, p.Body)
		}
		p = patBrowser.Post(h.URL+"/login/enroll", url.Values{"csrf_token": {p.CSRF(t)},
			"code": {mfa.GenerateCode(secret[1], clock.Now())}})
		next := regexp.MustCompile(`href="([^"]+)" id="continue"`).FindStringSubmatch(p.Body)
		if next == nil {
			t.Fatalf("no continue link after enrolling:\n%s", p.Body)
		}
		p = patBrowser.Get(h.URL + html.UnescapeString(next[1]))
		tok, _, claims := console.Exchange(t, console.Code(t, p, a), a)
		if claims["acr"] != sessions.ACRMFA {
			t.Fatalf("acr after the step-up = %v", claims["acr"])
		}
		call(t, h, "GET", path, bearer(tok.AccessToken)).want(t, http.StatusOK, nil)
	})

	t.Run("two factors, too long ago", func(t *testing.T) {
		clock.Advance(admin.DefaultMaxAuthAge + time.Minute)
		maxAge := map[string]string{"max_age": "3600"}
		wantStepUpChallenge(t, call(t, h, "GET", path, bearer(adaTok.AccessToken)), maxAge)
		// A refresh keeps the sign-in's auth_time: it cannot renew it.
		fresh, err := console.Conf.TokenSource(ctx, &oauth2.Token{RefreshToken: adaTok.RefreshToken}).Token()
		if err != nil {
			t.Fatal(err)
		}
		if fresh.AccessToken == adaTok.AccessToken {
			t.Fatal("the refresh returned the same access token")
		}
		wantStepUpChallenge(t, call(t, h, "GET", path, bearer(fresh.AccessToken)), maxAge)

		// The app asks for what the challenge named, and the new sign-in
		// (password and code again) is accepted.
		a := console.AuthURL(oauth2.SetAuthURLParam("max_age", maxAge["max_age"]))
		p := adaBrowser.SignInWithCode(a.URL, ada.Email, password, adaPhone)
		tok, _, _ := console.Exchange(t, console.Code(t, p, a), a)
		call(t, h, "GET", path, bearer(tok.AccessToken)).want(t, http.StatusOK, nil)
	})
}

// TestAPI_ServiceAccount: an offboarding script, a client marked as an
// admin service account, ends a user's sessions through the API with its
// own client_credentials token; the user's app is told over the back
// channel and the audit log names the client. Removing the mark, or
// deleting the client, stops the same token at the next request.
func TestAPI_ServiceAccount(t *testing.T) {
	h := servertest.New(t)
	ctx := h.Ctx
	alice := h.CreateUser("alice@example.com", password)
	recv := h.NewReceiver("app-a")
	appA := h.NewRP("app-a", func(c *clients.Client) { c.BackchannelLogoutURI = recv.URL })

	secret, err := h.Srv.Clients.Create(ctx, clients.Client{ID: "offboarding", Name: "Offboarding",
		GrantTypes: []string{clients.GrantClientCredentials}, Scopes: []string{"openid"}, AdminServiceAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	cc := clientcredentials.Config{ClientID: "offboarding", ClientSecret: secret,
		TokenURL: h.Issuer + "/oauth2/token", Scopes: []string{admin.Scope}}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	auth := bearer(tok.AccessToken)
	sessionsPath := "/admin/api/users/" + alice.ID + "/sessions"

	t.Run("revokes a user's sessions, the app is told", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		aliceTok := signIn(t, br, appA, alice.Email)
		var res sessions.Result
		call(t, h, "DELETE", sessionsPath, auth).want(t, http.StatusOK, &res)
		if res.Sessions != 1 || res.Notifications != 1 {
			t.Fatalf("revoke = %+v, want alice's session and one app told", res)
		}
		if got := recv.WaitFor(t, 1); got[0].Subject != alice.ID {
			t.Errorf("app-a was told about %q, want alice", got[0].Subject)
		}
		if appA.Introspect(t, aliceTok.AccessToken)["active"] != false || !signedOut(t, br, appA) {
			t.Error("alice is still signed in")
		}
		var n int
		if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = $1 AND action = 'sessions.revoke' AND target = $2`,
			audit.Client("offboarding"), alice.ID).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d audit records of the revocation by client:offboarding (%v), want 1", n, err)
		}
	})

	// refused checks that auth is refused with status and code and that
	// alice's new session survives the attempt.
	refused := func(t *testing.T, auth string, status int, code string) {
		t.Helper()
		signIn(t, servertest.NewBrowser(t), appA, alice.Email)
		before := liveSessions(t, h, alice.ID)
		call(t, h, "DELETE", sessionsPath, auth).wantError(t, status, code)
		if n := liveSessions(t, h, alice.ID); n != before {
			t.Fatalf("a refused revoke left %d of alice's %d sessions", n, before)
		}
	}

	t.Run("refused once the mark is removed", func(t *testing.T) {
		if err := h.Srv.Clients.SetAdminServiceAccount(ctx, "offboarding", false); err != nil {
			t.Fatal(err)
		}
		refused(t, auth, http.StatusForbidden, "insufficient_scope")
		// Nor does it get a new token with the scope.
		var re *oauth2.RetrieveError
		if _, err := cc.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
			t.Fatalf("an unmarked client asking for admin: %v, want invalid_scope", err)
		}
		// Marked again, the same token works again: the mark is read on
		// each request.
		if err := h.Srv.Clients.SetAdminServiceAccount(ctx, "offboarding", true); err != nil {
			t.Fatal(err)
		}
		call(t, h, "GET", "/admin/api/users/"+alice.ID, auth).want(t, http.StatusOK, nil)
	})

	t.Run("refused once the client is deleted", func(t *testing.T) {
		if err := h.Srv.Clients.Delete(ctx, "offboarding"); err != nil {
			t.Fatal(err)
		}
		refused(t, auth, http.StatusUnauthorized, "invalid_token")
	})
}

// TestToken_AdminScope: only an admin service account is granted the
// admin scope with client_credentials, whatever scopes the client is
// registered for.
func TestToken_AdminScope(t *testing.T) {
	h := servertest.New(t)
	ctx := h.Ctx
	ordinary := h.NewRP("reports", func(c *clients.Client) { c.Scopes = append(c.Scopes, admin.Scope) })
	secret, err := h.Srv.Clients.Create(ctx, clients.Client{ID: "hr-system",
		GrantTypes: []string{clients.GrantClientCredentials}, AdminServiceAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	token := func(id, secret string, scopes ...string) (*oauth2.Token, error) {
		return (&clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: h.Issuer + "/oauth2/token", Scopes: scopes}).Token(ctx)
	}

	var re *oauth2.RetrieveError
	if _, err := token(ordinary.ID, ordinary.Secret, "openid", admin.Scope); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" ||
		!strings.Contains(re.ErrorDescription, "admin service account") {
		t.Fatalf("an ordinary client asking for admin: %v, want invalid_scope naming service accounts", err)
	}
	var issued int
	if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_access_tokens`).Scan(&issued); err != nil || issued != 0 {
		t.Fatalf("%d access tokens stored after the refusal (%v), want none", issued, err)
	}
	tok, err := token(ordinary.ID, ordinary.Secret, "openid")
	if err != nil || strings.Join(grantedScopes(tok), " ") != "openid" {
		t.Fatalf("the same client without admin: %v %v, want a token for openid", tok, err)
	}
	tok, err = token("hr-system", secret, admin.Scope)
	if err != nil || strings.Join(grantedScopes(tok), " ") != admin.Scope {
		t.Fatalf("the service account: %v %v, want a token for admin", tok, err)
	}
	call(t, h, "GET", "/admin/api/audit", bearer(tok.AccessToken)).want(t, http.StatusOK, nil)
}
