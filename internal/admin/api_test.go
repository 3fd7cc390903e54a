package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

const password = "correct horse battery staple"

// response is one admin API answer with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends method path to the instance with auth as the Authorization
// header ("" sends none).
func call(t *testing.T, h *servertest.Harness, method, path, auth string) response {
	t.Helper()
	return callWith(t, h, method, path, auth, "")
}

// callWith is call with a JSON body ("" sends none).
func callWith(t *testing.T, h *servertest.Harness, method, path, auth, payload string) response {
	t.Helper()
	var rd io.Reader
	if payload != "" {
		rd = strings.NewReader(payload)
	}
	req, err := http.NewRequest(method, h.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if payload != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// want fails t unless r has status, and decodes the body into out (if not
// nil).
func (r response) want(t *testing.T, status int, out any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("body is not the expected JSON: %v\n%s", err, r.body)
		}
	}
}

// wantError fails t unless r is an error with status and code in the
// documented JSON shape.
func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	r.want(t, status, &e)
	if e.Error != code || e.Description == "" {
		t.Fatalf("error %+v, want code %q with a description", e, code)
	}
}

// withScopes is rp asking for scopes on top of its defaults.
func withScopes(rp *servertest.RP, scopes ...string) *servertest.RP {
	c := *rp
	c.Conf.Scopes = append(append([]string{}, rp.Conf.Scopes...), scopes...)
	return &c
}

// signIn signs br in to rp (with the password form unless br already has a
// session) and returns the tokens.
func signIn(t *testing.T, br *servertest.Browser, rp *servertest.RP, email string) *oauth2.Token {
	t.Helper()
	a := rp.AuthURL()
	p := br.Get(a.URL)
	if p.IsLoginForm() {
		p = br.SignIn(a.URL, email, password)
	}
	tok, _, _ := rp.Exchange(t, rp.Code(t, p, a), a)
	return tok
}

func bearer(tok string) string { return "Bearer " + tok }

// signInWithCode signs br in to rp with the password and a code from
// phone, and returns the tokens.
func signInWithCode(t *testing.T, br *servertest.Browser, rp *servertest.RP, email string, phone *servertest.Phone) *oauth2.Token {
	t.Helper()
	a := rp.AuthURL()
	p := br.SignInWithCode(a.URL, email, password, phone)
	tok, _, _ := rp.Exchange(t, rp.Code(t, p, a), a)
	return tok
}

// signedOut reports whether br is asked to sign in again at rp.
func signedOut(t *testing.T, br *servertest.Browser, rp *servertest.RP) bool {
	t.Helper()
	return br.Get(rp.AuthURL().URL).IsLoginForm()
}

func auditCount(t *testing.T, h *servertest.Harness) int {
	t.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func liveSessions(t *testing.T, h *servertest.Harness, userID string) int {
	t.Helper()
	list, err := h.Srv.Sessions.ListByUser(h.Ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

func notifications(list admin.SessionList) []admin.Notification {
	var out []admin.Notification
	for _, s := range list.Sessions {
		for _, a := range s.Apps {
			out = append(out, a.Notifications...)
		}
	}
	return out
}

// TestAPI drives the admin API over real HTTP with real access tokens: an
// administrator signs in with two factors to a console app asking for the
// admin scope, and manages alice, who is signed in to two apps from two
// browsers.
func TestAPI(t *testing.T) {
	h := servertest.New(t)
	// Deliveries happen when the test says, so each notification state can
	// be seen.
	h.StopBackground()
	ctx := h.Ctx
	root, err := h.Srv.Users.Create(ctx, users.NewUser{Email: "root@example.com", Name: "Root", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	rootPhone := h.EnrollTOTP(root)
	alice := h.CreateUser("alice@example.com", password)
	h.CreateUser("mallory@example.com", password)
	pat, err := h.Srv.Users.Create(ctx, users.NewUser{Email: "pat@example.com", Password: password, Admin: true})
	if err != nil {
		t.Fatal(err)
	}

	console := h.NewRP("console", func(c *clients.Client) { c.Scopes = append(c.Scopes, admin.Scope) })
	recvA, recvB := h.NewReceiver("app-a"), h.NewReceiver("app-b")
	appA := h.NewRP("app-a", func(c *clients.Client) { c.BackchannelLogoutURI = recvA.URL })
	appB := h.NewRP("app-b", func(c *clients.Client) { c.BackchannelLogoutURI = recvB.URL })

	rootBrowser := servertest.NewBrowser(t)
	adminTok := signInWithCode(t, rootBrowser, withScopes(console, admin.Scope), root.Email, rootPhone)
	auth := bearer(adminTok.AccessToken)
	// The same administrator, same session, without asking for the scope.
	plainTok := signIn(t, rootBrowser, console, root.Email)
	// A regular user asking for it is not granted it.
	malloryTok := signIn(t, servertest.NewBrowser(t), withScopes(console, admin.Scope), "mallory@example.com")
	// An administrator signed in with a password only is not granted it
	// either, and the API says what would do.
	patTok := signIn(t, servertest.NewBrowser(t), withScopes(console, admin.Scope), pat.Email)
	// A client's own token, without a person: an ordinary client is not
	// granted the scope at all (TestToken_AdminScope), so it has none.
	cc := clientcredentials.Config{ClientID: console.ID, ClientSecret: console.Secret,
		TokenURL: console.Conf.Endpoint.TokenURL, Scopes: []string{"openid"}}
	ccTok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// alice: two browsers, each signed in to both apps.
	aliceBrowsers := []*servertest.Browser{servertest.NewBrowser(t), servertest.NewBrowser(t)}
	var aliceTokens []*oauth2.Token
	for _, br := range aliceBrowsers {
		aliceTokens = append(aliceTokens, signIn(t, br, appA, alice.Email), signIn(t, br, appB, alice.Email))
	}
	aliceSessions := "/admin/api/users/" + alice.ID + "/sessions"

	t.Run("authentication", func(t *testing.T) {
		if adminTok.RefreshToken == "" {
			t.Fatal("the console got no refresh token to try as a bearer token")
		}
		before := auditCount(t, h)
		cases := []struct {
			name      string
			auth      string
			status    int
			code      string
			challenge string // prefix of WWW-Authenticate
		}{
			{"no token", "", 401, "unauthorized", `Bearer realm="idp"`},
			{"other scheme", "Basic Y29uc29sZTpzZWNyZXQ=", 401, "unauthorized", `Bearer realm="idp"`},
			{"empty bearer", "Bearer ", 401, "unauthorized", `Bearer realm="idp"`},
			{"garbage", "Bearer not-a-token", 401, "invalid_token", `Bearer error="invalid_token"`},
			{"refresh token", bearer(adminTok.RefreshToken), 401, "invalid_token", `Bearer error="invalid_token"`},
			{"admin without the admin scope", bearer(plainTok.AccessToken), 403, "insufficient_scope", `Bearer error="insufficient_scope"`},
			{"non-admin asking for the admin scope", bearer(malloryTok.AccessToken), 403, "insufficient_scope", `Bearer error="insufficient_scope"`},
			{"administrator signed in with a password only", bearer(patTok.AccessToken), 401, "insufficient_user_authentication",
				`Bearer error="insufficient_user_authentication"`},
			{"an ordinary client's own token", bearer(ccTok.AccessToken), 403, "insufficient_scope", `Bearer error="insufficient_scope"`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// A revoke-all, so that a wrongly accepted token would show.
				r := call(t, h, "DELETE", aliceSessions, tc.auth)
				r.wantError(t, tc.status, tc.code)
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tc.challenge) {
					t.Fatalf("WWW-Authenticate %q, want prefix %q", got, tc.challenge)
				}
			})
		}
		if n := liveSessions(t, h, alice.ID); n != 2 {
			t.Fatalf("alice has %d live sessions after refused requests, want 2", n)
		}
		if after := auditCount(t, h); after != before {
			t.Fatalf("refused requests wrote %d audit records", after-before)
		}
	})

	t.Run("find user", func(t *testing.T) {
		cases := []struct {
			name, path string
			status     int
			code       string // for errors
		}{
			{"by email", "/admin/api/users?email=alice@example.com", 200, ""},
			{"email ignores case", "/admin/api/users?email=ALICE@Example.com", 200, ""},
			{"by id", "/admin/api/users/" + alice.ID, 200, ""},
			{"unknown email", "/admin/api/users?email=nobody@example.com", 404, "not_found"},
			{"missing email", "/admin/api/users", 400, "invalid_request"},
			{"blank email", "/admin/api/users?email=%20", 400, "invalid_request"},
			{"malformed id", "/admin/api/users/not-a-uuid", 404, "not_found"},
			{"unknown id", "/admin/api/users/00000000-0000-0000-0000-000000000000", 404, "not_found"},
			{"unknown endpoint", "/admin/api/nothing-here", 404, "not_found"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, h, "GET", tc.path, auth)
				if tc.code != "" {
					r.wantError(t, tc.status, tc.code)
					return
				}
				var got admin.Account
				r.want(t, tc.status, &got)
				if got.ID != alice.ID || got.Email != alice.Email || got.IsAdmin || got.Disabled() ||
					got.MFAEnabled == nil || *got.MFAEnabled {
					t.Fatalf("user = %+v, want alice, not admin, enabled, no 2FA", got)
				}
			})
		}
	})

	t.Run("list sessions", func(t *testing.T) {
		var list admin.SessionList
		call(t, h, "GET", aliceSessions, auth).want(t, 200, &list)
		if list.UserID != alice.ID || len(list.Sessions) != 2 {
			t.Fatalf("listing = %+v, want alice's 2 sessions", list)
		}
		for _, s := range list.Sessions {
			if len(s.Apps) != 2 || s.Apps[0].ClientID != "app-a" || s.Apps[1].ClientID != "app-b" {
				t.Fatalf("session %s apps = %+v, want app-a then app-b", s.SID, s.Apps)
			}
			if !s.Apps[0].BackchannelLogout || s.Apps[0].Name != "App app-a" || s.Apps[0].SignedInAt == nil {
				t.Fatalf("app = %+v, want its name, sign-in time and back-channel logout", s.Apps[0])
			}
			if s.RevokedAt != nil || len(s.Apps[0].Notifications) != 0 || s.UserAgent == "" {
				t.Fatalf("live session %+v has revocation or notifications, or no user agent", s)
			}
		}
		for _, tc := range []struct {
			name, path string
			status     int
			code       string
		}{
			{"unknown include", aliceSessions + "?include=everything", 400, "invalid_request"},
			{"malformed id", "/admin/api/users/42/sessions", 404, "not_found"},
			{"unknown id", "/admin/api/users/00000000-0000-0000-0000-000000000000/sessions", 404, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				call(t, h, "GET", tc.path, auth).wantError(t, tc.status, tc.code)
			})
		}
	})

	t.Run("revoke all", func(t *testing.T) {
		var res sessions.Result
		call(t, h, "DELETE", aliceSessions, auth).want(t, 200, &res)
		if want := (sessions.Result{Sessions: 2, AccessTokens: 4, RefreshTokens: 4, Notifications: 4}); res != want {
			t.Fatalf("counts = %+v, want %+v", res, want)
		}
		for i, tok := range aliceTokens {
			if appA.Introspect(t, tok.AccessToken)["active"] != false {
				t.Errorf("alice's access token %d is still active", i)
			}
		}
		for i, br := range aliceBrowsers {
			if !signedOut(t, br, appA) {
				t.Errorf("alice's browser %d is still signed in", i)
			}
		}
		var audited int
		err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log
			WHERE action = 'sessions.revoke' AND actor = $1 AND target = $2`, "admin:"+root.ID, alice.ID).Scan(&audited)
		if err != nil || audited != 1 {
			t.Fatalf("audit records of the revocation: %d (%v), want 1", audited, err)
		}

		var live admin.SessionList
		call(t, h, "GET", aliceSessions, auth).want(t, 200, &live)
		if len(live.Sessions) != 0 {
			t.Fatalf("live sessions after revoke-all: %+v", live.Sessions)
		}

		// The notifications are queued, then delivered, and the listing
		// with revoked sessions shows both states.
		var list admin.SessionList
		call(t, h, "GET", aliceSessions+"?include=revoked", auth).want(t, 200, &list)
		if len(list.Sessions) != 2 || list.Sessions[0].RevokedReason != sessions.ReasonAdminRevoke {
			t.Fatalf("revoked listing = %+v, want 2 sessions revoked by an admin", list)
		}
		pending := notifications(list)
		if len(pending) != 4 {
			t.Fatalf("notifications = %+v, want 4", pending)
		}
		for _, n := range pending {
			if n.State != admin.StatePending || n.Attempts != 0 || n.NextAttemptAt == nil {
				t.Fatalf("notification %+v, want pending, not yet attempted", n)
			}
		}
		if _, err := h.Srv.Worker.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		recvA.WaitFor(t, 2)
		recvB.WaitFor(t, 2)
		var after admin.SessionList
		call(t, h, "GET", aliceSessions+"?include=revoked", auth).want(t, 200, &after)
		delivered := notifications(after)
		if len(delivered) != 4 {
			t.Fatalf("notifications = %+v, want 4", delivered)
		}
		for _, n := range delivered {
			if n.State != admin.StateDelivered || n.Attempts != 1 || n.DeliveredAt == nil || n.NextAttemptAt != nil {
				t.Fatalf("notification %+v, want delivered at the first attempt", n)
			}
		}
	})

	t.Run("revoke again finds nothing", func(t *testing.T) {
		var res sessions.Result
		call(t, h, "DELETE", aliceSessions, auth).want(t, 200, &res)
		if res != (sessions.Result{}) {
			t.Fatalf("second revoke-all = %+v, want zeros", res)
		}
	})

	t.Run("unknown and malformed ids change nothing", func(t *testing.T) {
		before := auditCount(t, h)
		for _, path := range []string{
			"/admin/api/users/not-a-uuid/sessions",
			"/admin/api/users/00000000-0000-0000-0000-000000000000/sessions",
		} {
			call(t, h, "DELETE", path, auth).wantError(t, 404, "not_found")
		}
		for _, path := range []string{
			"/admin/api/users/not-a-uuid/disable",
			"/admin/api/users/00000000-0000-0000-0000-000000000000/disable",
			"/admin/api/users/x'--/enable",
			"/admin/api/outbox/abc/retry",
			"/admin/api/outbox/-1/retry",
			"/admin/api/outbox/999999/retry",
		} {
			call(t, h, "POST", path, auth).wantError(t, 404, "not_found")
		}
		if after := auditCount(t, h); after != before {
			t.Fatalf("refused requests wrote %d audit records", after-before)
		}
	})

	t.Run("disable and enable", func(t *testing.T) {
		bob := h.CreateUser("bob@example.com", password)
		br := servertest.NewBrowser(t)
		tok := signIn(t, br, appA, bob.Email)

		var disabled struct {
			User    users.User      `json:"user"`
			Revoked sessions.Result `json:"revoked"`
		}
		call(t, h, "POST", "/admin/api/users/"+bob.ID+"/disable", auth).want(t, 200, &disabled)
		if !disabled.User.Disabled() || disabled.Revoked.Sessions != 1 || disabled.Revoked.Notifications != 1 {
			t.Fatalf("disable = %+v, want bob disabled and his session ended", disabled)
		}
		if appA.Introspect(t, tok.AccessToken)["active"] != false {
			t.Error("bob's access token is still active")
		}
		a := appA.AuthURL()
		if p := br.SignIn(a.URL, bob.Email, password); !strings.Contains(p.Body, "disabled") {
			t.Fatalf("a disabled user signing in got %s (%d), want the disabled message", p.URL, p.Status)
		}
		reason := dbtest.Value[string](t, h.DB.Pool, `SELECT revoked_reason FROM sso_sessions WHERE user_id = $1`, bob.ID)
		if reason != sessions.ReasonUserDisabled {
			t.Fatalf("bob's session revoked for %q, want %q", reason, sessions.ReasonUserDisabled)
		}

		var enabled struct {
			User users.User `json:"user"`
		}
		call(t, h, "POST", "/admin/api/users/"+bob.ID+"/enable", auth).want(t, 200, &enabled)
		if enabled.User.Disabled() {
			t.Fatalf("enable = %+v, want bob enabled", enabled.User)
		}
		signIn(t, br, appA, bob.Email)

		var actions []string
		rows, err := h.DB.Pool.Query(ctx, `SELECT action FROM audit_log WHERE actor = $1 AND target = $2 ORDER BY id`,
			"admin:"+root.ID, bob.ID)
		if err == nil {
			for rows.Next() {
				var a string
				rows.Scan(&a)
				actions = append(actions, a)
			}
			err = rows.Err()
		}
		if err != nil || strings.Join(actions, ",") != "sessions.revoke,users.disable,users.enable" {
			t.Fatalf("audit actions for bob = %v (%v), want revoke, disable, enable", actions, err)
		}
	})

	t.Run("set a password", func(t *testing.T) {
		dora := h.CreateUser("dora@example.com", password)
		br := servertest.NewBrowser(t)
		tok := signIn(t, br, appA, dora.Email)
		path := "/admin/api/users/" + dora.ID + "/password"
		refusals := []struct {
			name, path, body string
			status           int
			code             string
		}{
			{"not JSON", path, "password=x", 400, "invalid_request"},
			{"an unknown field", path, `{"password": "temporary for dora", "expires": 1}`, 400, "invalid_request"},
			{"a common password", path, `{"password": "Password1"}`, 400, "invalid_request"},
			{"too short", path, `{"password": "short"}`, 400, "invalid_request"},
			{"an unknown user", "/admin/api/users/00000000-0000-0000-0000-000000000000/password", `{"password": "temporary for dora"}`, 404, "not_found"},
		}
		for _, rc := range refusals {
			callWith(t, h, "POST", rc.path, auth, rc.body).wantError(t, rc.status, rc.code)
			if same, err := h.Srv.Users.SameAsCurrent(ctx, dora.ID, password); err != nil || !same {
				t.Fatalf("%s: the password changed (%v)", rc.name, err)
			}
			if appA.Introspect(t, tok.AccessToken)["active"] != true {
				t.Fatalf("%s: dora's access token was revoked", rc.name)
			}
		}

		var set struct {
			Temporary bool            `json:"temporary"`
			Revoked   sessions.Result `json:"revoked"`
		}
		callWith(t, h, "POST", path, auth, `{"password": "temporary for dora"}`).want(t, 200, &set)
		if !set.Temporary || set.Revoked.Sessions != 1 {
			t.Fatalf("set = %+v, want temporary and dora's session ended", set)
		}
		if appA.Introspect(t, tok.AccessToken)["active"] != false {
			t.Error("dora's access token is still active")
		}
		if p := servertest.NewBrowser(t).SignIn(appA.AuthURL().URL, dora.Email, "temporary for dora"); p.URL.Path != "/login/new-password" {
			t.Errorf("signing in with the temporary password led to %s (%d), want the new-password form", p.URL, p.Status)
		}
		callWith(t, h, "POST", path, auth, `{"password": "lasting for dora", "temporary": false}`).want(t, 200, &set)
		if set.Temporary {
			t.Error(`"temporary": false set a temporary password`)
		}
		if p := servertest.NewBrowser(t).SignIn(appA.AuthURL().URL, dora.Email, "lasting for dora"); p.URL.Path != "/callback" {
			t.Errorf("signing in with a lasting password led to %s (%d), want the app", p.URL, p.Status)
		}
	})

	t.Run("retry a failed notification", func(t *testing.T) {
		refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "unknown session", http.StatusBadRequest)
		}))
		defer refusing.Close()
		appC := h.NewRP("app-c", func(c *clients.Client) { c.BackchannelLogoutURI = refusing.URL })
		carol := h.CreateUser("carol@example.com", password)
		signIn(t, servertest.NewBrowser(t), appC, carol.Email)
		carolSessions := "/admin/api/users/" + carol.ID + "/sessions"
		call(t, h, "DELETE", carolSessions, auth).want(t, 200, nil)
		if _, err := h.Srv.Worker.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}

		state := func() admin.Notification {
			t.Helper()
			var list admin.SessionList
			call(t, h, "GET", carolSessions+"?include=revoked", auth).want(t, 200, &list)
			ns := notifications(list)
			if len(ns) != 1 {
				t.Fatalf("carol's notifications = %+v, want 1", ns)
			}
			return ns[0]
		}
		n := state()
		if n.State != admin.StateFailed || n.Attempts != 1 || n.LastError == "" || n.FailedAt == nil {
			t.Fatalf("notification %+v, want failed with its error", n)
		}

		var accepted struct {
			State string `json:"state"`
		}
		call(t, h, "POST", "/admin/api/outbox/"+strconv.FormatInt(n.ID, 10)+"/retry", auth).want(t, 202, &accepted)
		if n := state(); n.State != admin.StatePending || n.FailedAt != nil || accepted.State != admin.StatePending {
			t.Fatalf("after retry: %+v, want pending again", n)
		}

		// A delivered notification is done; there is nothing to retry.
		var list admin.SessionList
		call(t, h, "GET", aliceSessions+"?include=revoked", auth).want(t, 200, &list)
		call(t, h, "POST", "/admin/api/outbox/"+strconv.FormatInt(notifications(list)[0].ID, 10)+"/retry", auth).wantError(t, 404, "not_found")
	})

	t.Run("audit log", func(t *testing.T) {
		type page struct {
			Entries    []audit.Entry `json:"entries"`
			NextBefore int64         `json:"next_before"`
		}
		var all page
		call(t, h, "GET", "/admin/api/audit", auth).want(t, 200, &all)
		if n := auditCount(t, h); len(all.Entries) != n || n == 0 || all.NextBefore != 0 {
			t.Fatalf("%d entries (next_before %d), want all %d of the table on one page", len(all.Entries), all.NextBefore, n)
		}
		for i := 1; i < len(all.Entries); i++ {
			if all.Entries[i].ID >= all.Entries[i-1].ID {
				t.Fatalf("entries not newest first: %d before %d", all.Entries[i-1].ID, all.Entries[i].ID)
			}
		}

		// A user's: what was done to them, by whom, and nothing else.
		for email, want := range map[string][]string{
			"alice@example.com": {"sessions.revoke"},
			"bob@example.com":   {"users.disable", "sessions.revoke", "users.enable"},
			"dora@example.com":  {"users.set_password", "sessions.revoke"},
		} {
			u, err := h.Srv.Users.ByEmail(ctx, email)
			if err != nil {
				t.Fatal(err)
			}
			var theirs page
			call(t, h, "GET", "/admin/api/audit?user="+u.ID, auth).want(t, 200, &theirs)
			actions := map[string]string{} // action → actor
			for _, e := range theirs.Entries {
				if e.Target != u.ID && e.Actor != "user:"+u.ID && e.Actor != "admin:"+u.ID {
					t.Errorf("%s: entry %+v is neither about nor by them", email, e)
				}
				actions[e.Action] = e.Actor
			}
			for _, a := range want {
				if actions[a] != "admin:"+root.ID {
					t.Errorf("%s: %s by %q, want by admin:%s (all: %v)", email, a, actions[a], root.ID, actions)
				}
			}
			var n int
			if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE target = $1 OR actor IN ('user:' || $1, 'admin:' || $1)`,
				u.ID).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if len(theirs.Entries) != n {
				t.Errorf("%s: %d entries, the table has %d", email, len(theirs.Entries), n)
			}
		}
		// root's: what the administrator did, to anyone.
		var roots page
		call(t, h, "GET", "/admin/api/audit?user="+root.ID, auth).want(t, 200, &roots)
		if len(roots.Entries) == 0 || roots.Entries[0].Actor != "admin:"+root.ID || roots.Entries[0].Action != "outbox.retry" {
			t.Errorf("root's log starts with %+v, want the retry just made", roots.Entries)
		}

		// Pages of two walk the whole log once.
		var walked []int64
		for before := int64(0); ; {
			path := "/admin/api/audit?limit=2"
			if before != 0 {
				path += "&before=" + strconv.FormatInt(before, 10)
			}
			var p page
			call(t, h, "GET", path, auth).want(t, 200, &p)
			for _, e := range p.Entries {
				walked = append(walked, e.ID)
			}
			if p.NextBefore == 0 {
				break
			}
			if len(p.Entries) != 2 || p.NextBefore != p.Entries[1].ID {
				t.Fatalf("page %+v: next_before %d", p.Entries, p.NextBefore)
			}
			before = p.NextBefore
		}
		if len(walked) != len(all.Entries) {
			t.Fatalf("paging saw %d entries, want %d", len(walked), len(all.Entries))
		}
		for i, id := range walked {
			if id != all.Entries[i].ID {
				t.Fatalf("paging: entry %d is %d, want %d", i, id, all.Entries[i].ID)
			}
		}

		for _, tc := range []struct {
			query  string
			status int
			code   string
		}{
			{"limit=0", 400, "invalid_request"},
			{"limit=501", 400, "invalid_request"},
			{"limit=ten", 400, "invalid_request"},
			{"before=-3", 400, "invalid_request"},
			{"user=", 400, "invalid_request"},
			{"user=not-a-uuid", 404, "not_found"},
			{"user=00000000-0000-0000-0000-000000000000", 404, "not_found"},
		} {
			call(t, h, "GET", "/admin/api/audit?"+tc.query, auth).wantError(t, tc.status, tc.code)
		}
		call(t, h, "GET", "/admin/api/audit", bearer(malloryTok.AccessToken)).wantError(t, 403, "insufficient_scope")
	})

	t.Run("create a user", func(t *testing.T) {
		countUsers := func() int {
			var n int
			if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := countUsers()
		for _, tc := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"not JSON", `email=x`, 400, "invalid_request"},
			{"unknown field", `{"email": "fay@example.com", "password": "` + password + `", "role": "admin"}`, 400, "invalid_request"},
			{"no email", `{"password": "` + password + `"}`, 400, "invalid_request"},
			{"not an email", `{"email": "fay", "password": "` + password + `"}`, 400, "invalid_request"},
			{"name too long", `{"email": "fay@example.com", "name": "` + strings.Repeat("é", users.MaxNameRunes+1) + `", "password": "` + password + `"}`, 400, "invalid_request"},
			{"name with a line break", `{"email": "fay@example.com", "name": "Fay\nAdmin", "password": "` + password + `"}`, 400, "invalid_request"},
			{"common password", `{"email": "fay@example.com", "password": "password1"}`, 400, "invalid_request"},
			{"email taken, in another case", `{"email": "ALICE@example.com", "password": "` + password + `"}`, 409, "conflict"},
		} {
			callWith(t, h, "POST", "/admin/api/users", auth, tc.body).wantError(t, tc.status, tc.code)
			if n := countUsers(); n != before {
				t.Fatalf("%s: %d accounts, want %d: a refused create stored one", tc.name, n, before)
			}
		}
		callWith(t, h, "POST", "/admin/api/users", bearer(malloryTok.AccessToken),
			`{"email": "fay@example.com", "password": "`+password+`"}`).wantError(t, 403, "insufficient_scope")

		// Temporary by default: the person chooses their own at once.
		var fay admin.Account
		r := callWith(t, h, "POST", "/admin/api/users", auth, `{"email": "Fay@Example.com", "name": "Fay", "password": "`+password+`"}`)
		r.want(t, 201, &fay)
		if fay.Email != "Fay@Example.com" || fay.Name != "Fay" || fay.IsAdmin || r.header.Get("Location") != "/admin/api/users/"+fay.ID {
			t.Fatalf("created %+v at %q", fay, r.header.Get("Location"))
		}
		if p := servertest.NewBrowser(t).SignIn(appA.AuthURL().URL, "fay@example.com", password); p.URL.Path != "/login/new-password" {
			t.Errorf("fay's first sign-in went to %s, want the new-password step", p.URL)
		}
		var audited int
		if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'users.create' AND actor = $1 AND target = $2
			AND details = '{"admin": false, "temporary_password": true}'`, "admin:"+root.ID, fay.ID).Scan(&audited); err != nil || audited != 1 {
			t.Errorf("audit records of the create: %d (%v), want 1", audited, err)
		}
		// An administrator whose password is their own.
		var gus admin.Account
		callWith(t, h, "POST", "/admin/api/users", auth,
			`{"email": "gus@example.com", "password": "`+password+`", "admin": true, "temporary": false}`).want(t, 201, &gus)
		if !gus.IsAdmin {
			t.Errorf("gus = %+v, want an administrator", gus)
		}
		if p := servertest.NewBrowser(t).SignIn(appA.AuthURL().URL, "gus@example.com", password); p.URL.Path != "/callback" {
			t.Errorf("gus's sign-in went to %s, want straight back to the app", p.URL)
		}
	})

	t.Run("delete a user", func(t *testing.T) {
		erin := h.CreateUser("erin@example.com", password)
		br := servertest.NewBrowser(t)
		tokA, tokB := signIn(t, br, appA, erin.Email), signIn(t, br, appB, erin.Email)
		before := [2]int{len(recvA.Tokens()), len(recvB.Tokens())}
		erinPath := "/admin/api/users/" + erin.ID

		// Not one's own account, and nothing changes for asking.
		call(t, h, "DELETE", "/admin/api/users/"+root.ID, auth).wantError(t, 409, "conflict")
		if _, err := h.Srv.Users.ByID(ctx, root.ID); err != nil {
			t.Fatalf("the administrator's account after a refused self-delete: %v", err)
		}

		var got struct {
			Deleted bool            `json:"deleted"`
			Revoked sessions.Result `json:"revoked"`
		}
		call(t, h, "DELETE", erinPath, auth).want(t, 200, &got)
		if want := (sessions.Result{Sessions: 1, AccessTokens: 2, RefreshTokens: 2, Notifications: 2}); !got.Deleted || got.Revoked != want {
			t.Fatalf("delete answered %+v, want deleted and %+v", got, want)
		}
		for _, tok := range []string{tokA.AccessToken, tokB.AccessToken} {
			if appA.Introspect(t, tok)["active"] != false {
				t.Error("an access token of the deleted account is still active")
			}
		}
		if !signedOut(t, br, appA) {
			t.Error("the deleted account's browser is still signed in")
		}
		if p := servertest.NewBrowser(t).SignIn(appA.AuthURL().URL, erin.Email, password); p.Status != http.StatusUnauthorized {
			t.Errorf("signing in to the deleted account: %d, want 401", p.Status)
		}
		// Both apps are told, though the account is gone.
		if _, err := h.Srv.Worker.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		for i, r := range []*servertest.Receiver{recvA, recvB} {
			claims := r.WaitFor(t, before[i]+1)
			if last := claims[len(claims)-1]; last.Subject != erin.ID {
				t.Errorf("app %d was told about %q, want the deleted account %s", i, last.Subject, erin.ID)
			}
		}
		// Nothing is left under the account; the audit log keeps its id.
		var left int
		if err := h.DB.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users WHERE id = $1)
			+ (SELECT count(*) FROM password_credentials WHERE user_id = $1)
			+ (SELECT count(*) FROM sso_sessions WHERE user_id = $1)`, erin.ID).Scan(&left); err != nil || left != 0 {
			t.Errorf("%d rows left under the deleted account (%v)", left, err)
		}
		var e []audit.Entry
		call(t, h, "GET", "/admin/api/audit?limit=2", auth).want(t, 200, &struct {
			Entries *[]audit.Entry `json:"entries"`
		}{&e})
		if len(e) != 2 || e[0].Action != "users.delete" || e[0].Target != erin.ID || e[1].Action != "sessions.revoke" {
			t.Errorf("latest audit entries %+v, want the deletion after its revocation", e)
		}
		call(t, h, "DELETE", erinPath, auth).wantError(t, 404, "not_found")
		call(t, h, "GET", erinPath, auth).wantError(t, 404, "not_found")
	})

	t.Run("administrator who lost the role", func(t *testing.T) {
		ops, err := h.Srv.Users.Create(ctx, users.NewUser{Email: "ops@example.com", Password: password, Admin: true})
		if err != nil {
			t.Fatal(err)
		}
		opsAuth := bearer(signInWithCode(t, servertest.NewBrowser(t), withScopes(console, admin.Scope), ops.Email,
			h.EnrollTOTP(ops)).AccessToken)
		path := "/admin/api/users?email=alice@example.com"
		call(t, h, "GET", path, opsAuth).want(t, 200, nil)

		if _, err := h.DB.Pool.Exec(ctx, `UPDATE users SET is_admin = false WHERE id = $1`, ops.ID); err != nil {
			t.Fatal(err)
		}
		call(t, h, "GET", path, opsAuth).wantError(t, 403, "insufficient_scope")

		if _, err := h.DB.Pool.Exec(ctx, `UPDATE users SET is_admin = true WHERE id = $1`, ops.ID); err != nil {
			t.Fatal(err)
		}
		// Disabled directly in the store, so the token itself stays valid
		// and only the account check can refuse it.
		if err := h.Srv.Users.SetDisabled(ctx, ops.ID, true); err != nil {
			t.Fatal(err)
		}
		call(t, h, "GET", path, opsAuth).wantError(t, 403, "insufficient_scope")
	})

	t.Run("an administrator's own revoked token", func(t *testing.T) {
		var res sessions.Result
		call(t, h, "DELETE", "/admin/api/users/"+root.ID+"/sessions", auth).want(t, 200, &res)
		if res.Sessions != 1 {
			t.Fatalf("revoking root's own sessions = %+v, want 1 session", res)
		}
		call(t, h, "GET", "/admin/api/users?email=alice@example.com", auth).wantError(t, 401, "invalid_token")
	})
}
