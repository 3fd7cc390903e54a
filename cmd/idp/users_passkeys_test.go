package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/passkey/passkeytest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sessions/sessionstest"
	"github.com/idp/idp/internal/users"
)

func TestRun_UsersPasskeys(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	keys, err := passkey.New(d.Pool, "https://login.example.com", "idp", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &sessions.Manager{Pool: d.Pool, Now: time.Now, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour}
	ada, err := users.NewStore(d.Pool).Create(ctx, users.NewUser{Email: "ada@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	p := passkey.Person{ID: ada.ID, Email: ada.Email}
	opts, err := keys.BeginRegistration(ctx, p, "test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := passkeytest.New("https://login.example.com").Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keys.FinishRegistration(ctx, p, "test", resp, "Work laptop", "")
	if err != nil {
		t.Fatal(err)
	}
	s := sessionstest.Create(t, mgr, nil, sessions.NewSession{UserID: ada.ID, AuthTime: time.Now(),
		AMR: []string{"hwk", "pin", "mfa"}, ACR: sessions.ACRPhishingResistant})

	runCLI(t, d.URL, "", "users", "passkeys", "list", "--user", "ada@example.com").check(t, 0, pk.ID+"  Work laptop  device-bound  internal,hybrid")
	r := runCLI(t, d.URL, "", "users", "passkeys", "list", "--user", "ada@example.com", "--json")
	var list []passkey.Passkey
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != pk.ID {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing id", []string{"--user", "ada@example.com"}, 2, "missing required flag --id"},
		{"unknown id", []string{"--user", "ada@example.com", "--id", "00000000-0000-0000-0000-000000000000"}, 1, "ada@example.com has no passkey with id"},
		{"unknown user", []string{"--user", "nobody@example.com", "--id", pk.ID}, 1, "no user with email nobody@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runCLI(t, d.URL, "", append([]string{"users", "passkeys", "remove"}, tc.args...)...).check(t, tc.code, tc.want)
			if on, _ := keys.Registered(ctx, ada.ID); !on {
				t.Fatal("a refused removal removed the passkey")
			}
		})
	}

	runCLI(t, d.URL, "", "users", "passkeys", "remove", "--user", "ada@example.com", "--id", pk.ID).
		check(t, 0, "removed passkey "+pk.ID+" of ada@example.com: 1 session ended")
	if got, _ := mgr.Get(ctx, s.ID); got.RevokedAt == nil || got.RevokedReason != sessions.ReasonFactorsChanged {
		t.Errorf("the session was not ended for the change of factors: %+v", got)
	}
	r = runCLI(t, d.URL, "", "users", "passkeys", "list", "--user", "ada@example.com")
	r.check(t, 0, "ada@example.com has no passkeys")
	if strings.Contains(r.stdout, "Work laptop") {
		t.Error("the removed passkey is still listed")
	}
}
