package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sessions/sessionstest"
	"github.com/idp/idp/internal/users"
)

func TestRun_UsersSetPassword(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	store := users.NewStore(d.Pool)
	mgr := &sessions.Manager{Pool: d.Pool, Now: time.Now, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour}
	if _, err := clients.NewStore(d.Pool).Create(ctx, clients.Client{ID: "app", RedirectURIs: []string{"https://app.example.com/cb"},
		BackchannelLogoutURI: "https://app.example.com/bcl", GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	const oldPassword, newPassword = "correct horse battery", "a brand new passphrase"
	ada, err := store.Create(ctx, users.NewUser{Email: "ada@example.com", Password: oldPassword})
	if err != nil {
		t.Fatal(err)
	}
	s := sessionstest.Create(t, mgr, nil, sessions.NewSession{UserID: ada.ID, AuthTime: time.Now(),
		AMR: []string{sessions.AMRPassword}, ACR: sessions.ACRPassword}, "app")
	live := func() bool {
		t.Helper()
		got, err := mgr.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.RevokedAt == nil
	}

	t.Run("refusals change nothing", func(t *testing.T) {
		cases := []struct {
			name  string
			stdin string
			args  []string
			code  int
			want  string
		}{
			{"no password on stdin", "", []string{"users", "set-password", "--email", "ada@example.com"}, 2, "idp users set-password --email"},
			{"too short", "short\n", []string{"users", "set-password", "--email", "ada@example.com"}, 1, "at least 8 characters"},
			{"common", "Password1\n", []string{"users", "set-password", "--email", "ada@example.com"}, 1, "one of the most common passwords"},
			{"unknown user", newPassword + "\n", []string{"users", "set-password", "--email", "nobody@example.com"}, 1, "no user with email"},
			{"missing email", newPassword + "\n", []string{"users", "set-password"}, 2, "missing required flag --user"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				runCLI(t, d.URL, tc.stdin, tc.args...).check(t, tc.code, tc.want)
				if err := store.VerifyPassword(ctx, ada.ID, oldPassword); err != nil {
					t.Fatalf("the old password stopped working: %v", err)
				}
				if !live() {
					t.Fatal("a refusal ended the session")
				}
			})
		}
	})

	mustChange := func(t *testing.T) bool {
		t.Helper()
		var must bool
		if err := d.Pool.QueryRow(ctx, `SELECT must_change FROM password_credentials WHERE user_id = $1`, ada.ID).Scan(&must); err != nil {
			t.Fatal(err)
		}
		return must
	}

	t.Run("sets it and ends every session", func(t *testing.T) {
		runCLI(t, d.URL, newPassword+"\n", "users", "set-password", "--email", "ada@example.com").
			check(t, 0, "set the password of ada@example.com: 1 session ended, 1 logout notification queued; "+
				"they choose their own at the next sign-in")
		if err := store.VerifyPassword(ctx, ada.ID, oldPassword); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Errorf("old password: %v, want ErrInvalidCredentials", err)
		}
		if err := store.VerifyPassword(ctx, ada.ID, newPassword); err != nil {
			t.Errorf("new password: %v", err)
		}
		if live() {
			t.Error("the session is still live")
		}
		if mustChange(t) != true {
			t.Error("the password an administrator set is not temporary")
		}
		var audited int
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'users.set_password' AND target = $1 AND actor = 'cli'`,
			ada.ID).Scan(&audited); err != nil || audited != 1 {
			t.Errorf("audit rows: %d (%v), want 1", audited, err)
		}
	})

	t.Run("--temporary=false sets a lasting one", func(t *testing.T) {
		runCLI(t, d.URL, "another lasting passphrase\n", "users", "set-password", "--email", "ada@example.com", "--temporary=false").
			check(t, 0, "it is theirs to keep")
		if mustChange(t) {
			t.Error("--temporary=false set a temporary password")
		}
	})

	// users create means what set-password means by --temporary, with the
	// same default: the administrator knows the password.
	for _, tc := range []struct {
		email string
		flags []string
		want  bool
	}{
		{"eve@example.com", []string{"--temporary"}, true},
		{"fay@example.com", nil, true},
		{"gus@example.com", []string{"--temporary=false"}, false},
	} {
		t.Run(fmt.Sprint("users create ", tc.flags), func(t *testing.T) {
			runCLI(t, d.URL, "a first passphrase\n", append([]string{"users", "create", "--email", tc.email}, tc.flags...)...).
				check(t, 0, "created user "+tc.email)
			var must bool
			if err := d.Pool.QueryRow(ctx, `SELECT p.must_change FROM password_credentials p JOIN users u ON u.id = p.user_id
				WHERE u.email = $1`, tc.email).Scan(&must); err != nil || must != tc.want {
				t.Errorf("must_change = %v (%v), want %v", must, err, tc.want)
			}
		})
	}
}
