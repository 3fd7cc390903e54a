package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/alerts"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

const testPassword = "correct horse battery staple"

// signInTo signs br in to rp, with the form unless br already has a
// session, and returns the access token.
func signInTo(t *testing.T, br *servertest.Browser, rp *servertest.RP, email string) string {
	t.Helper()
	a := rp.AuthURL()
	p := br.Get(a.URL)
	if p.IsLoginForm() {
		p = br.SignIn(a.URL, email, testPassword)
	}
	tok, _, _ := rp.Exchange(t, rp.Code(t, p, a), a)
	return tok.AccessToken
}

// TestRun_Sessions runs the CLI against the database of a running
// provider, where alice is signed in to one app from two browsers.
func TestRun_Sessions(t *testing.T) {
	h := servertest.New(t)
	h.StopBackground() // the test delivers notifications itself
	alice := h.CreateUser("alice@example.com", testPassword)
	recv := h.NewReceiver("app-a")
	app := h.NewRP("app-a", func(c *clients.Client) { c.BackchannelLogoutURI = recv.URL })
	browsers := []*servertest.Browser{servertest.NewBrowser(t), servertest.NewBrowser(t)}
	var tokens []string
	for _, br := range browsers {
		tokens = append(tokens, signInTo(t, br, app, alice.Email))
	}
	live, err := h.Srv.Sessions.ListByUser(h.Ctx, alice.ID)
	if err != nil || len(live) != 2 {
		t.Fatalf("alice's sessions: %d (%v), want 2", len(live), err)
	}

	t.Run("list", func(t *testing.T) {
		r := runCLI(t, h.DB.URL, "", "sessions", "list", "--user", "ALICE@example.com")
		r.check(t, 0, "SID")
		for _, s := range live {
			if !strings.Contains(r.stdout, s.ID) {
				t.Fatalf("listing lacks session %s:\n%s", s.ID, r.stdout)
			}
		}
		if strings.Count(r.stdout, "app-a") != 2 || !strings.Contains(r.stdout, "127.0.0.1") {
			t.Fatalf("listing does not show app-a and the address for each session:\n%s", r.stdout)
		}
	})

	t.Run("list json", func(t *testing.T) {
		r := runCLI(t, h.DB.URL, "", "sessions", "list", "--user", alice.Email, "--json")
		r.check(t, 0, "sessions")
		var list admin.SessionList
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if len(list.Sessions) != 2 || len(list.Sessions[0].Apps) != 1 || list.Sessions[0].Apps[0].ClientID != "app-a" {
			t.Fatalf("listing = %+v, want 2 sessions with app-a", list)
		}
	})

	// Refused invocations come before the revocation, so that one that
	// wrongly did something would show in its counts.
	refused := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"list unknown user", []string{"sessions", "list", "--user", "nobody@example.com"}, 1, "no user with email nobody@example.com"},
		{"revoke unknown user", []string{"sessions", "revoke", "--user", "nobody@example.com"}, 1, "no user with email nobody@example.com"},
		{"disable unknown user", []string{"users", "disable", "--email", "nobody@example.com"}, 1, "no user with email"},
		{"enable unknown user", []string{"users", "enable", "--email", "nobody@example.com"}, 1, "no user with email"},
		{"revoke without user", []string{"sessions", "revoke"}, 2, "missing required flag --user"},
		{"list without user", []string{"sessions", "list", "--json"}, 2, "missing required flag --user"},
		{"disable without email", []string{"users", "disable"}, 2, "missing required flag --user"},
		{"stray argument", []string{"sessions", "revoke", "--user", alice.Email, "now"}, 2, "unexpected argument"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			runCLI(t, h.DB.URL, "", tc.args...).check(t, tc.code, tc.want)
		})
	}

	t.Run("revoke", func(t *testing.T) {
		r := runCLI(t, h.DB.URL, "", "sessions", "revoke", "--user", alice.Email)
		r.check(t, 0, "revoked 2 sessions of alice@example.com: 2 access tokens, 2 refresh tokens; 2 logout notifications queued")
		for i, tok := range tokens {
			if app.Introspect(t, tok)["active"] != false {
				t.Errorf("access token %d still active", i)
			}
		}
		for i, br := range browsers {
			if !br.Get(app.AuthURL().URL).IsLoginForm() {
				t.Errorf("browser %d still signed in", i)
			}
		}
		var actor string
		err := h.DB.Pool.QueryRow(h.Ctx, `SELECT actor FROM audit_log WHERE action = 'sessions.revoke' AND target = $1`,
			alice.ID).Scan(&actor)
		if err != nil || actor != "cli" {
			t.Fatalf("audit actor = %q (%v), want cli", actor, err)
		}
	})

	t.Run("revoke again", func(t *testing.T) {
		r := runCLI(t, h.DB.URL, "", "sessions", "revoke", "--user", alice.Email, "--json")
		r.check(t, 0, "sessions")
		var res sessions.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res != (sessions.Result{}) {
			t.Fatalf("second revoke = %s (%v), want zeros", r.stdout, err)
		}
	})

	t.Run("list shows the logout confirmations", func(t *testing.T) {
		runCLI(t, h.DB.URL, "", "sessions", "list", "--user", alice.Email).check(t, 0, "alice@example.com has no live sessions")
		if _, err := h.Srv.Worker.DeliverDue(h.Ctx); err != nil {
			t.Fatal(err)
		}
		recv.WaitFor(t, 2)
		r := runCLI(t, h.DB.URL, "", "sessions", "list", "--user", alice.Email, "--include-revoked")
		r.check(t, 0, "ENDED")
		if strings.Count(r.stdout, "app-a: delivered") != 2 || strings.Count(r.stdout, sessions.ReasonAdminRevoke) != 2 {
			t.Fatalf("listing does not show both sessions revoked and confirmed:\n%s", r.stdout)
		}
	})

	t.Run("disable and enable", func(t *testing.T) {
		br := servertest.NewBrowser(t)
		tok := signInTo(t, br, app, alice.Email)
		runCLI(t, h.DB.URL, "", "users", "disable", "--email", alice.Email).
			check(t, 0, "disabled alice@example.com; ended 1 session: 1 access token")
		if app.Introspect(t, tok)["active"] != false {
			t.Error("access token still active after disable")
		}
		a := app.AuthURL()
		if p := br.SignIn(a.URL, alice.Email, testPassword); !strings.Contains(p.Body, "disabled") {
			t.Fatalf("a disabled user signing in got %s (%d), want the disabled message", p.URL, p.Status)
		}
		runCLI(t, h.DB.URL, "", "users", "list").check(t, 0, "disabled 20")

		r := runCLI(t, h.DB.URL, "", "users", "enable", "--email", alice.Email, "--json")
		r.check(t, 0, `"email": "alice@example.com"`)
		if strings.Contains(r.stdout, "disabled_at") {
			t.Fatalf("enable printed a disabled user:\n%s", r.stdout)
		}
		signInTo(t, br, app, alice.Email)
	})
}

// TestSessionsRevoke_AlertMail: `idp sessions revoke`, given the
// instances' mail settings, queues the "was this you?" mail of an
// administrator's revoke-all as the admin API does; a running instance
// delivers it. Without them the command still revokes, says that no mail
// is queued when the settings are incomplete, and queues none.
func TestSessionsRevoke_AlertMail(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	h := servertest.New(t, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
	alice := h.CreateUser("alice@example.com", testPassword)
	app := h.NewRP("app-a")
	cli := func(env map[string]string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(args, "--database-url", h.DB.URL), func(k string) string { return env[k] },
			strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	revokeAlerts := func() int {
		return dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM outbox WHERE kind = $1 AND reason = $2`,
			alerts.OutboxKind, alerts.EventAdminRevoked)
	}

	signInTo(t, servertest.NewBrowser(t), app, alice.Email)
	before := len(smtp.To(alice.Email))
	env := map[string]string{"IDP_SMTP_URL": smtp.URL(), "IDP_MAIL_FROM": "login@example.com",
		"IDP_SECRET": h.Srv.Config.Secret, "IDP_ISSUER": h.Issuer}
	if out, err := cli(env, "sessions", "revoke", "--user", alice.Email); err != nil || !strings.Contains(out, "revoked 1 session") {
		t.Fatalf("sessions revoke: %v\n%s", err, out)
	}
	m := smtp.Wait(alice.Email, before+1, 10*time.Second)
	if s := m.Header.Get("Subject"); !strings.Contains(s, "You were signed out of") {
		t.Errorf("subject %q, want the revoke-all alert's", s)
	}
	if !strings.Contains(m.Text, "By: an administrator") || m.Link(t) != h.Issuer+alerts.ForgotPath {
		t.Errorf("the revoke-all alert:\n%s", m.Text)
	}

	for name, env := range map[string]map[string]string{
		"without mail settings": nil,
		"without the secret":    {"IDP_SMTP_URL": smtp.URL(), "IDP_MAIL_FROM": "login@example.com", "IDP_ISSUER": h.Issuer},
	} {
		t.Run(name, func(t *testing.T) {
			signInTo(t, servertest.NewBrowser(t), app, alice.Email)
			queued := revokeAlerts()
			out, err := cli(env, "sessions", "revoke", "--user", alice.Email)
			if err != nil || !strings.Contains(out, "revoked 1 session") {
				t.Fatalf("sessions revoke: %v\n%s", err, out)
			}
			if (env != nil) != strings.Contains(out, "no mail is queued") {
				t.Errorf("the note on mail:\n%s", out)
			}
			if n := revokeAlerts(); n != queued {
				t.Errorf("%d alerts queued, want none", n-queued)
			}
		})
	}
}
