package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// signedInApp is one app's view of a sign-in.
type signedInApp struct {
	rp      *servertest.RP
	recv    *servertest.Receiver
	tok     *oauth2.Token
	idToken string
	sid     string
}

// twoApps registers two apps with back-channel logout receivers.
func twoApps(h *servertest.Harness) (a, b *servertest.RP, ra, rb *servertest.Receiver) {
	ra, rb = h.NewReceiver("app-a"), h.NewReceiver("app-b")
	a = h.NewRP("app-a", func(c *clients.Client) { c.BackchannelLogoutURI = ra.URL })
	b = h.NewRP("app-b", func(c *clients.Client) { c.BackchannelLogoutURI = rb.URL })
	return
}

// signInTo signs the browser in to app (with the form if needed) and
// exchanges the code.
func signInTo(t *testing.T, br *servertest.Browser, app *servertest.RP, recv *servertest.Receiver, email string, extra ...oauth2.AuthCodeOption) signedInApp {
	t.Helper()
	a := app.AuthURL(extra...)
	p := br.Get(a.URL)
	if p.IsLoginForm() {
		p = br.SignIn(a.URL, email, password)
	}
	tok, _, claims := app.Exchange(t, app.Code(t, p, a), a)
	return signedInApp{rp: app, recv: recv, tok: tok, idToken: tok.Extra("id_token").(string), sid: claims["sid"].(string)}
}

func (s signedInApp) assertDead(t *testing.T) {
	t.Helper()
	if s.rp.Introspect(t, s.tok.AccessToken)["active"] != false {
		t.Errorf("%s: access token still active", s.rp.ID)
	}
	if _, err := s.rp.Conf.TokenSource(s.rp.H.Ctx, &oauth2.Token{RefreshToken: s.tok.RefreshToken}).Token(); err == nil {
		t.Errorf("%s: refresh token still works", s.rp.ID)
	}
}

func TestLogout_RPInitiated(t *testing.T) {
	h := servertest.New(t)
	user := h.CreateUser("alice@example.com", password)
	appA, appB, recvA, recvB := twoApps(h)
	alice := servertest.NewBrowser(t)
	inA := signInTo(t, alice, appA, recvA, "alice@example.com")
	inB := signInTo(t, alice, appB, recvB, "alice@example.com")
	if inA.sid != inB.sid {
		t.Fatalf("SSO gave two sids: %s, %s", inA.sid, inB.sid)
	}
	endSession := h.Issuer + "/oauth2/sessions/logout"

	t.Run("bad requests change nothing", func(t *testing.T) {
		foreign := foreignIDToken(t, h.Issuer, user.ID, inA.sid)
		cases := []struct {
			name string
			q    url.Values
		}{
			{"garbage hint", url.Values{"id_token_hint": {"not-a-jwt"}}},
			{"hint signed by someone else", url.Values{"id_token_hint": {foreign}}},
			{"client_id not the hint's audience", url.Values{"id_token_hint": {inA.idToken}, "client_id": {"app-b"}}},
			{"unregistered post_logout_redirect_uri", url.Values{"id_token_hint": {inA.idToken},
				"post_logout_redirect_uri": {"https://evil.example/"}}},
			{"redirect uri without a known client", url.Values{"post_logout_redirect_uri": {appA.Callback.URL + "/logged-out"}}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p := alice.Get(endSession + "?" + tc.q.Encode())
				if p.Status != http.StatusBadRequest || p.URL.Path != "/oauth2/sessions/logout" {
					t.Fatalf("got %d at %s, want a 400 error page", p.Status, p.URL)
				}
				if _, err := h.Srv.Sessions.Get(h.Ctx, inA.sid); err != nil {
					t.Fatal(err)
				}
				if s, _ := h.Srv.Sessions.Get(h.Ctx, inA.sid); s.RevokedAt != nil {
					t.Fatal("session revoked by a bad request")
				}
			})
		}
	})

	t.Run("without a hint the person confirms", func(t *testing.T) {
		p := alice.Get(endSession)
		if p.Status != http.StatusOK || !strings.Contains(p.Body, "Sign out?") {
			t.Fatalf("want the confirmation page, got %d:\n%s", p.Status, p.Body)
		}
		if s, _ := h.Srv.Sessions.Get(h.Ctx, inA.sid); s.RevokedAt != nil {
			t.Fatal("session revoked without confirmation")
		}
		p = alice.Post(h.Issuer+"/oauth2/sessions/logout/confirm", url.Values{"csrf_token": {"forged"}})
		if p.Status != http.StatusForbidden {
			t.Fatalf("forged confirmation: status %d, want 403", p.Status)
		}
	})

	// The real thing: app A sends the person to end the session.
	q := url.Values{"id_token_hint": {inA.idToken}, "post_logout_redirect_uri": {appA.Callback.URL + "/logged-out"},
		"state": {"st-123"}}
	p := alice.Get(endSession + "?" + q.Encode())
	if p.URL.Path != "/logged-out" || p.URL.Query().Get("state") != "st-123" {
		t.Fatalf("after logout the browser is at %s, want the app's post-logout URI with state", p.URL)
	}

	for _, app := range []signedInApp{inA, inB} {
		tokens := app.recv.WaitFor(t, 1)
		if tokens[0].SID != inA.sid || tokens[0].Subject != user.ID {
			t.Errorf("%s: logout token sid=%s sub=%s, want %s %s", app.rp.ID, tokens[0].SID, tokens[0].Subject, inA.sid, user.ID)
		}
		app.assertDead(t)
	}
	a := appA.AuthURL(oauth2.SetAuthURLParam("prompt", "none"))
	if p := alice.Get(a.URL); p.URL.Query().Get("error") != "login_required" {
		t.Fatalf("prompt=none after logout: %s, want login_required", p.URL)
	}

	t.Run("logging out again is harmless", func(t *testing.T) {
		p := alice.Get(endSession + "?" + q.Encode())
		if p.URL.Path != "/logged-out" {
			t.Fatalf("second logout ended at %s", p.URL)
		}
		// The second logout queued nothing, so nothing more can arrive.
		for _, r := range h.WaitDelivered(t) {
			if r.Attempts != 1 {
				t.Errorf("notification %+v, want delivered once", r)
			}
		}
		if rows := h.LogoutRows(t); len(rows) != 2 {
			t.Fatalf("%d logout notifications after logging out twice, want the first logout's 2", len(rows))
		}
		if n := len(recvA.Tokens()); n != 1 {
			t.Fatalf("app A got %d logout tokens, want 1", n)
		}
	})
}

// foreignIDToken is a well-formed ID token signed by a key that is not ours.
func foreignIDToken(t *testing.T, issuer, sub, sid string) string {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "not-ours"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(map[string]any{"iss": issuer, "sub": sub, "sid": sid, "aud": "app-a",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestLogout_RevokeAll: two devices × two apps, one revoke-all: four valid
// logout tokens, every token dead — offline_access ones included.
func TestLogout_RevokeAll(t *testing.T) {
	h := servertest.New(t)
	user := h.CreateUser("alice@example.com", password)
	appA, appB, recvA, recvB := twoApps(h)
	var apps []signedInApp
	for range 2 {
		br := servertest.NewBrowser(t)
		apps = append(apps, signInTo(t, br, appA, recvA, "alice@example.com", oauth2.SetAuthURLParam("scope", "openid offline_access")))
		apps = append(apps, signInTo(t, br, appB, recvB, "alice@example.com"))
	}
	res, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: user.ID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions != 2 || res.Notifications != 4 {
		t.Fatalf("revoke = %+v, want 2 sessions and 4 notifications", res)
	}
	for _, recv := range []*servertest.Receiver{recvA, recvB} {
		got := recv.WaitFor(t, 2)
		if got[0].SID == got[1].SID {
			t.Errorf("both tokens for one sid %s", got[0].SID)
		}
	}
	for _, app := range apps {
		app.assertDead(t)
	}
}

// TestLogout_OfflineAccessSurvivesSignOut: offline_access refresh tokens are
// for work without the person; a sign-out keeps them, revoke-all does not.
func TestLogout_OfflineAccessSurvivesSignOut(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	br := servertest.NewBrowser(t)
	online := signInTo(t, br, appA, recvA, "alice@example.com")
	offline := signInTo(t, br, appA, recvA, "alice@example.com", oauth2.SetAuthURLParam("scope", "openid offline_access"))
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: []string{online.sid}, Reason: sessions.ReasonLogout}); err != nil {
		t.Fatal(err)
	}
	online.assertDead(t)
	if _, err := appA.Conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: offline.tok.RefreshToken}).Token(); err != nil {
		t.Fatalf("offline_access refresh token died with the session: %v", err)
	}
}

func TestLogout_ExpiryNotifies(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	in := signInTo(t, servertest.NewBrowser(t), appA, recvA, "alice@example.com")
	if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE sso_sessions SET idle_expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	// The janitor runs this every 30 s on every instance; call it now.
	res, err := h.Srv.Sessions.ExpireDue(h.Ctx, 100)
	if err != nil || res.Sessions != 1 {
		t.Fatalf("ExpireDue = %+v, %v", res, err)
	}
	if got := recvA.WaitFor(t, 1); got[0].SID != in.sid {
		t.Fatalf("logout token for sid %s, want %s", got[0].SID, in.sid)
	}
	in.assertDead(t)
	reason := dbtest.Value[string](t, h.DB.Pool, `SELECT revoked_reason FROM sso_sessions WHERE id = $1`, in.sid)
	if reason != sessions.ReasonExpired {
		t.Fatalf("reason = %q", reason)
	}
}

func TestLogout_ReceiverFailsTwice(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	in := signInTo(t, servertest.NewBrowser(t), appA, recvA, "alice@example.com")
	recvA.FailNext(2)
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: []string{in.sid}, Reason: sessions.ReasonLogout}); err != nil {
		t.Fatal(err)
	}
	recvA.WaitFor(t, 1)
	// The worker records the outcome just after the receiver answers.
	rows := h.WaitDelivered(t)
	if len(rows) != 1 || rows[0].Attempts != 3 {
		t.Fatalf("notifications %+v, want one delivered on attempt 3", rows)
	}
}

// TestLogout_SurvivesRestart: the provider stops between the revocation and
// the delivery; the next instance to start delivers.
func TestLogout_SurvivesRestart(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	appA, _, recvA, _ := twoApps(h)
	in := signInTo(t, servertest.NewBrowser(t), appA, recvA, "alice@example.com")
	h.StopBackground()
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: []string{in.sid}, Reason: sessions.ReasonLogout}); err != nil {
		t.Fatal(err)
	}
	if rows := h.LogoutRows(t); len(rows) != 1 || rows[0].Attempts != 0 || rows[0].Delivered {
		t.Fatalf("with no instance running the outbox holds %+v, want one row never attempted", rows)
	}
	servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Issuer = h.Issuer })
	recvA.WaitFor(t, 1)
}

// TestLogout_TwoInstancesDeliverOnce: two instances share one database;
// every notification arrives exactly once.
func TestLogout_TwoInstancesDeliverOnce(t *testing.T) {
	h := servertest.New(t)
	servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Issuer = h.Issuer })
	appA, appB, recvA, recvB := twoApps(h)
	const n = 15
	for i := range n {
		email := fmt.Sprintf("user%d@example.com", i)
		h.CreateUser(email, password)
		br := servertest.NewBrowser(t)
		signInTo(t, br, appA, recvA, email)
		signInTo(t, br, appB, recvB, email)
	}
	if _, err := h.DB.Pool.Exec(h.Ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	sids := dbtest.Column[string](t, h.DB.Pool, `SELECT id::text FROM sso_sessions`)
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{SIDs: sids, Reason: sessions.ReasonAdminRevoke}); err != nil {
		t.Fatal(err)
	}
	for _, recv := range []*servertest.Receiver{recvA, recvB} {
		recv.WaitFor(t, n)
	}
	// Every row delivered on its first attempt: each app was POSTed once
	// per session, so no duplicate can still be on its way.
	for _, r := range h.WaitDelivered(t) {
		if r.Attempts != 1 {
			t.Errorf("notification %+v attempted more than once", r)
		}
	}
	for _, recv := range []*servertest.Receiver{recvA, recvB} {
		seen := map[string]bool{}
		for _, tok := range recv.Tokens() {
			if seen[tok.SID] {
				t.Errorf("sid %s notified twice", tok.SID)
			}
			seen[tok.SID] = true
		}
		if len(seen) != n {
			t.Errorf("%d distinct sids notified, want %d", len(seen), n)
		}
	}
}

// TestLogout_PrivateBackchannelRefused: without IDP_ALLOW_PRIVATE_BACKCHANNEL
// an app cannot register a back-channel logout URI on this host, and one
// whose host resolves here (localhost, set in the database as a name
// registered before the policy, or one whose DNS changed, would be) is
// refused at delivery: the notification fails, naming the setting, and the
// app receives nothing.
func TestLogout_PrivateBackchannelRefused(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.AllowPrivateBackchannel = false })
	user := h.CreateUser("alice@example.com", password)
	recv := h.NewReceiver("app")
	_, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "loopback", RedirectURIs: []string{"https://app.example.com/cb"},
		BackchannelLogoutURI: recv.URL})
	if !errors.Is(err, clients.ErrInvalid) || !strings.Contains(err.Error(), "IDP_ALLOW_PRIVATE_BACKCHANNEL") {
		t.Fatalf("registering %s: %v, want refused naming IDP_ALLOW_PRIVATE_BACKCHANNEL", recv.URL, err)
	}

	app := h.NewRP("app")
	uri := strings.Replace(recv.URL, "127.0.0.1", "localhost", 1) + "/bc"
	if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE oauth_clients SET backchannel_logout_uri = $1 WHERE id = 'app'`, uri); err != nil {
		t.Fatal(err)
	}
	signInTo(t, servertest.NewBrowser(t), app, recv, "alice@example.com")
	if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: user.ID, Reason: sessions.ReasonAdminRevoke, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	var lastError string
	waitFor(t, 10*time.Second, "the notification to fail", func() bool {
		err := h.DB.Pool.QueryRow(h.Ctx, `SELECT last_error FROM outbox WHERE kind = 'logout' AND client_id = 'app' AND failed_at IS NOT NULL`).
			Scan(&lastError)
		return err == nil
	})
	if !strings.Contains(lastError, "IDP_ALLOW_PRIVATE_BACKCHANNEL") {
		t.Errorf("last_error %q does not name IDP_ALLOW_PRIVATE_BACKCHANNEL", lastError)
	}
	if n := len(recv.Tokens()); n != 0 {
		t.Errorf("the app on this host received %d logout tokens, want none", n)
	}
}
