package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
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
		{"no delivery", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email"}, 2, "--push, --poll, or --poll-url"},
		{"token and client", env, []string{"--issuer", "https://tx.example.com", "--subjects", "email", "--poll-url", "https://tx.example.com/poll", "--poll-token", "t", "--client-id", "c"}, 2, "either --token or --client-id"},
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

// runStdin runs args with exactly the environment env and stdin.
func runStdin(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr, report bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, &stderr)
	code := exitCode(err, &report)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, code: code, message: report.String()}
}

// TestRun_SignalsTransmittersStream: given a credential at the
// transmitter (first, another provider on its own database), `add`
// creates our stream there and asks for verification, whose event
// arrives at second's push endpoint; `list` shows it verified; `verify`
// asks again; `remove` deletes the stream there, and says so when it
// cannot. Refusals by the transmitter change nothing on either side.
func TestRun_SignalsTransmittersStream(t *testing.T) {
	first := servertest.New(t)
	second := servertest.New(t, func(c *server.Config) { c.SignalPollInterval = 100 * time.Millisecond })
	us := first.NewRP("second", func(c *clients.Client) { c.Scopes = append(c.Scopes, ssf.Scope) })
	other := first.NewRP("other")
	noScope, err := (&clientcredentials.Config{ClientID: other.ID, ClientSecret: other.Secret, TokenURL: first.Issuer + "/oauth2/token"}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	env := map[string]string{"IDP_DATABASE_URL": second.DB.URL, "IDP_SECRET": second.Srv.Config.Secret, "IDP_ISSUER": second.Issuer,
		"IDP_ALLOW_PRIVATE_BACKCHANNEL": "true"}
	without := func(k string) map[string]string {
		e := maps.Clone(env)
		delete(e, k)
		return e
	}
	add := []string{"signals", "transmitters", "add", "--issuer", first.Issuer, "--subjects", "email"}
	cc := []string{"--client-id", us.ID, "--client-secret", "-", "--token-url", first.Issuer + "/oauth2/token", "--token-scope", "ssf"}
	streams := func() int { return dbtest.Value[int](t, first.DB.Pool, `SELECT count(*) FROM ssf_streams`) }

	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"configuration unreachable", env, append([]string{"--push", "--config-url", gone.URL + "/.well-known/ssf-configuration"}, cc...), 1, "configuration could not be read"},
		{"403 from the transmitter", env, []string{"--push", "--token", noScope.AccessToken}, 1, "HTTP 403 (insufficient_scope"},
		{"wrong client secret", env, []string{"--poll", "--client-id", us.ID, "--client-secret", "wrong", "--token-url", first.Issuer + "/oauth2/token"}, 1, "gave no token"},
		{"push stream without IDP_ISSUER", without("IDP_ISSUER"), append([]string{"--push"}, cc...), 2, "IDP_ISSUER is required"},
		{"credential without IDP_SECRET", without("IDP_SECRET"), append([]string{"--poll"}, cc...), 2, "IDP_SECRET is required"},
		{"poll without credential", env, []string{"--poll"}, 2, "polling needs --token or --client-id"},
		{"poll and poll URL", env, append([]string{"--poll", "--poll-url", first.Issuer + "/ssf/poll"}, cc...), 2, "one of them"},
	} {
		t.Run(c.name, func(t *testing.T) {
			runStdin(t, c.env, us.Secret, append(add, c.args...)...).check(t, c.code, c.want)
			if n := dbtest.Value[int](t, second.DB.Pool, `SELECT count(*) FROM ssf_transmitters`); n != 0 {
				t.Errorf("%d transmitters stored", n)
			}
			if n := streams(); n != 0 {
				t.Errorf("%d streams at first", n)
			}
		})
	}

	r := runStdin(t, env, us.Secret, append(append(add, "--push"), cc...)...)
	r.check(t, 0, "verification requested")
	if !strings.Contains(r.stdout, "created there, pushing to "+second.Issuer+"/ssf/receive/tx_") || strings.Contains(r.stdout, "Bearer") {
		t.Errorf("add says:\n%s", r.stdout)
	}
	list := func() receiver.Transmitter {
		t.Helper()
		r := runEnv(t, env, "signals", "transmitters", "list", "--json")
		var l []receiver.Transmitter
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l) != 1 {
			t.Fatalf("list --json: %v\n%s", err, r.stdout)
		}
		return l[0]
	}
	tx := list()
	if tx.StreamID == "" || streams() != 1 {
		t.Fatalf("no stream: %+v, %d at first", tx, streams())
	}
	deadline := time.Now().Add(15 * time.Second)
	for tx.VerifiedAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no verification event after 15s: %+v", tx)
		}
		time.Sleep(50 * time.Millisecond)
		tx = list()
	}
	r = runEnv(t, env, "signals", "transmitters", "list")
	r.check(t, 0, tx.StreamID)
	if strings.Contains(r.stdout, "pending") || !strings.Contains(r.stdout, tx.VerifiedAt.UTC().Format("2006-01-02 15:04:05")) {
		t.Errorf("list does not show it verified:\n%s", r.stdout)
	}

	runEnv(t, env, "signals", "transmitters", "verify", tx.ID).check(t, 0, "verification requested of "+tx.ID)
	runEnv(t, env, "signals", "transmitters", "verify", "tx_nobody").check(t, 1, "no transmitter")
	runEnv(t, without("IDP_SECRET"), "signals", "transmitters", "verify", tx.ID).check(t, 2, "IDP_SECRET is required")
	runEnv(t, without("IDP_SECRET"), "signals", "transmitters", "remove", tx.ID).check(t, 2, "IDP_SECRET is required")

	r = runEnv(t, env, "signals", "transmitters", "remove", tx.ID)
	r.check(t, 0, "stream "+tx.StreamID+" deleted at "+first.Issuer)
	if n := streams(); n != 0 {
		t.Errorf("%d streams at first after remove", n)
	}

	// A poll stream, with the token read from standard input; the
	// transmitter unreachable at removal: said, and removed here anyway.
	tok, err := (&clientcredentials.Config{ClientID: us.ID, ClientSecret: us.Secret, TokenURL: first.Issuer + "/oauth2/token", Scopes: []string{ssf.Scope}}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r = runStdin(t, env, tok.AccessToken, append(add, "--poll", "--token", "-")...)
	r.check(t, 0, "polled at "+first.Issuer+"/ssf/poll")
	tx = list()
	if _, err := second.DB.Pool.Exec(context.Background(), `UPDATE ssf_transmitters SET config_url = $1`, gone.URL+"/.well-known/ssf-configuration"); err != nil {
		t.Fatal(err)
	}
	r = runEnv(t, env, "signals", "transmitters", "remove", tx.ID)
	r.check(t, 0, "removed")
	if !strings.Contains(r.stderr, "is not deleted") || !strings.Contains(r.stderr, "could not be read") {
		t.Errorf("remove does not say the stream is left:\n%s", r.stderr)
	}
	if n := dbtest.Value[int](t, second.DB.Pool, `SELECT count(*) FROM ssf_transmitters`); n != 0 {
		t.Errorf("%d transmitters after remove", n)
	}
}
