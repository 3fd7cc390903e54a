package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sessions/sessionstest"
	"github.com/idp/idp/internal/users"
)

func TestRun_UsersResetMFA(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	box, err := secrets.New("cli-test-secret-0123456789-abcdefghijklmnop", "totp")
	if err != nil {
		t.Fatal(err)
	}
	totp := &mfa.TOTP{Pool: d.Pool, Box: box, Issuer: "idp"}
	mgr := &sessions.Manager{Pool: d.Pool, Now: time.Now, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour}
	if _, err := clients.NewStore(d.Pool).Create(ctx, clients.Client{ID: "app", RedirectURIs: []string{"https://app.example.com/cb"},
		BackchannelLogoutURI: "https://app.example.com/bcl", GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}

	// person creates a user with a session at app, and 2FA when enrolled.
	person := func(email string, enrolled bool) (users.User, sessions.Session) {
		t.Helper()
		u, err := users.NewStore(d.Pool).Create(ctx, users.NewUser{Email: email, Password: "correct horse battery"})
		if err != nil {
			t.Fatal(err)
		}
		if enrolled {
			e, err := totp.Begin(ctx, u.ID, "test", email)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := totp.Confirm(ctx, u.ID, "test", mfa.GenerateCode(e.Secret, time.Now())); err != nil {
				t.Fatal(err)
			}
		}
		s := sessionstest.Create(t, mgr, nil, sessions.NewSession{UserID: u.ID, AuthTime: time.Now(),
			AMR: []string{sessions.AMRPassword}, ACR: sessions.ACRPassword}, "app")
		return u, s
	}
	ada, adaSession := person("ada@example.com", true)
	_, bobSession := person("bob@example.com", false)
	carol, _ := person("carol@example.com", true)

	live := func(s sessions.Session) bool {
		t.Helper()
		got, err := mgr.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.RevokedAt == nil
	}
	enabled := func(u users.User) bool {
		t.Helper()
		on, err := totp.Enabled(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return on
	}

	t.Run("refusals change nothing", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			code int
			want string
		}{
			{"missing email", []string{"users", "reset-mfa"}, 2, "missing required flag --user"},
			{"stray argument", []string{"users", "reset-mfa", "--email", "ada@example.com", "now"}, 2, "unexpected argument"},
			{"unknown user", []string{"users", "reset-mfa", "--email", "nobody@example.com"}, 1, "no user with email nobody@example.com"},
			{"user without 2FA", []string{"users", "reset-mfa", "--email", "bob@example.com"}, 1, "bob@example.com has no two-factor authentication set up"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				runCLI(t, d.URL, "", tc.args...).check(t, tc.code, tc.want)
				if !enabled(ada) || !live(adaSession) || !live(bobSession) {
					t.Fatal("a refused reset changed 2FA or ended a session")
				}
			})
		}
	})

	t.Run("reset removes 2FA and ends every session", func(t *testing.T) {
		runCLI(t, d.URL, "", "users", "reset-mfa", "--email", "ADA@example.com").
			check(t, 0, "reset two-factor authentication of ada@example.com: 1 session ended, 1 logout notification queued")
		if enabled(ada) {
			t.Fatal("2FA is still on")
		}
		if n, _ := totp.RemainingRecoveryCodes(ctx, ada.ID); n != 0 {
			t.Errorf("%d recovery codes left, want 0", n)
		}
		got, err := mgr.Get(ctx, adaSession.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RevokedAt == nil || got.RevokedReason != sessions.ReasonFactorsChanged {
			t.Errorf("session: revoked %v reason %q, want revoked for %q", got.RevokedAt, got.RevokedReason, sessions.ReasonFactorsChanged)
		}
		var outbox, audits int
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind = 'logout' AND sid = $1 AND client_id = 'app'`, adaSession.ID).Scan(&outbox); err != nil {
			t.Fatal(err)
		}
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = 'cli' AND target = $1
			AND details->>'reason' = $2`, ada.ID, sessions.ReasonFactorsChanged).Scan(&audits); err != nil {
			t.Fatal(err)
		}
		if outbox != 1 || audits != 1 {
			t.Errorf("outbox rows %d, audit records %d; want 1 and 1", outbox, audits)
		}
		if !live(bobSession) {
			t.Error("another user's session ended")
		}
		runCLI(t, d.URL, "", "users", "reset-mfa", "--email", "ada@example.com").check(t, 1, "has no two-factor authentication")
	})

	t.Run("json", func(t *testing.T) {
		r := runCLI(t, d.URL, "", "users", "reset-mfa", "--email", "carol@example.com", "--json")
		r.check(t, 0, "user_id")
		var out struct {
			UserID   string `json:"user_id"`
			Email    string `json:"email"`
			Sessions int    `json:"sessions"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if out.UserID != carol.ID || out.Email != carol.Email || out.Sessions != 1 || enabled(carol) {
			t.Fatalf("json %+v: want carol with 1 session ended and 2FA off", out)
		}
	})
}
