package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/ssf/receiver"
)

func TestRun_SignalsTransmitters(t *testing.T) {
	d := dbtest.New(t)
	env := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": keysTestSecret}
	runCLI(t, d.URL, "", "signals", "transmitters", "list").check(t, 0, "no transmitters")

	// Refused, and nothing stored.
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no delivery", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email"}, 2, "--push, or --poll-url"},
		{"token and client", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email", "--poll-url", "https://tx.example.com/poll", "--poll-token", "t", "--client-id", "c"}, 2, "either --poll-token or --client-id"},
		{"both deliveries", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email", "--push", "--poll-url", "https://tx.example.com/poll", "--poll-token", "t"}, 2, "choose how"},
		{"no subjects", env, []string{"--issuer", "https://tx.example.com", "--push"}, 2, "--subjects"},
		{"bad subjects", env, []string{"--issuer", "https://tx.example.com", "--subjects", "phone", "--push"}, 1, "not email or iss_sub"},
		{"bad event", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email", "--events", "account-enabled", "--push"}, 1, "is not one of"},
		{"http issuer", env, []string{"--issuer", "http://tx.example.com", "--subjects", "email", "--push"}, 1, "https"},
		{"private issuer", env, []string{"--issuer", "https://127.0.0.1:8443", "--subjects", "email", "--push"}, 1, "IDP_ALLOW_PRIVATE_BACKCHANNEL"},
		{"poll without secret", map[string]string{"IDP_DATABASE_URL": d.URL}, []string{"--issuer", "https://tx.example.com", "--subjects", "email",
			"--poll-url", "https://tx.example.com/ssf/poll", "--poll-token", "t"}, 2, "IDP_SECRET"},
	} {
		t.Run(c.name, func(t *testing.T) {
			runEnv(t, c.env, append([]string{"signals", "transmitters", "add"}, c.args...)...).check(t, c.code, c.want)
		})
	}
	if n := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM ssf_transmitters`); n != 0 {
		t.Fatalf("%d transmitters stored by refused commands", n)
	}

	r := runEnv(t, env, "signals", "transmitters", "add", "--issuer", "https://push.example.com", "--subjects", "email,iss_sub",
		"--events", "session-revoked,credential-change", "--push", "--json")
	r.check(t, 0, "authorization_header")
	if !strings.Contains(r.stdout, "Bearer ") {
		t.Fatalf("the push header is not shown:\n%s", r.stdout)
	}
	runEnv(t, env, "signals", "transmitters", "add", "--issuer", "https://push.example.com", "--subjects", "email", "--push").
		check(t, 1, "already registered")
	runEnv(t, env, "signals", "transmitters", "add", "--issuer", "https://poll.example.com", "--subjects", "email",
		"--poll-url", "https://poll.example.com/ssf/poll", "--poll-token", "the-token").check(t, 0, "added")
	runEnv(t, env, "signals", "transmitters", "add", "--issuer", "https://cc.example.com", "--subjects", "email",
		"--poll-url", "https://cc.example.com/ssf/poll", "--client-id", "us", "--token-url", "https://cc.example.com/token").
		check(t, 1, "needs its client secret")
	if n := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM ssf_transmitters WHERE position('the-token' in encode(poll_token_encrypted, 'escape')) > 0`); n != 0 {
		t.Error("the poll token is stored in the clear")
	}

	r = runCLI(t, d.URL, "", "signals", "transmitters", "list")
	r.check(t, 0, "https://poll.example.com")
	if !strings.Contains(r.stdout, "session-revoked,credential-change") {
		t.Errorf("listing lacks the events:\n%s", r.stdout)
	}
	r = runCLI(t, d.URL, "", "signals", "transmitters", "list", "--json")
	r.check(t, 0, "")
	var list []receiver.Transmitter
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("--json: %v, %d transmitters:\n%s", err, len(list), r.stdout)
	}
	if list[0].Delivery != receiver.DeliveryPush || list[1].Delivery != receiver.DeliveryPoll || strings.Contains(r.stdout, "the-token") {
		t.Errorf("--json = %+v", list)
	}

	runCLI(t, d.URL, "", "signals", "transmitters", "remove", "tx_nobody").check(t, 1, "no transmitter")
	runCLI(t, d.URL, "", "signals", "transmitters", "remove").check(t, 2, "name one transmitter")
	runCLI(t, d.URL, "", "signals", "transmitters", "remove", list[0].ID).check(t, 0, "removed")
	if n := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM ssf_transmitters`); n != 1 {
		t.Errorf("%d transmitters after remove, want 1", n)
	}
	if n := dbtest.Value[int](t, d.Pool, `SELECT count(*) FROM audit_log WHERE action LIKE 'ssf.transmitter_%'`); n != 3 {
		t.Errorf("%d audit entries, want 3 (two adds, one remove)", n)
	}
}
