package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

func TestRun_SignalsStreams(t *testing.T) {
	h := servertest.New(t)
	h.StopBackground()
	r := runCLI(t, h.DB.URL, "", "signals", "streams", "list")
	r.check(t, 0, "no streams")

	h.NewRP("receiver", func(c *clients.Client) { c.Scopes = append(c.Scopes, ssf.Scope) })
	store := &ssf.Store{Pool: h.DB.Pool}
	poll := ssf.DeliveryPoll
	st, err := store.Create(h.Ctx, "receiver", ssf.Config{Method: &poll})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(h.Ctx, "receiver", st.ID, "s"); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, h.DB.URL, "", "signals", "streams", "list")
	r.check(t, 0, "BACKLOG")
	if !strings.Contains(r.stdout, st.ID) || !strings.Contains(r.stdout, "receiver") || !strings.Contains(r.stdout, "poll") {
		t.Fatalf("listing lacks the stream:\n%s", r.stdout)
	}
	r = runCLI(t, h.DB.URL, "", "signals", "streams", "list", "--json")
	r.check(t, 0, "")
	var list []ssf.State
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(list) != 1 || list[0].StreamID != st.ID || list[0].Backlog != 1 || list[0].Status != ssf.StatusEnabled {
		t.Fatalf("--json = %+v, want the enabled stream with the verification waiting", list)
	}

	r = runCLI(t, h.DB.URL, "", "signals", "streams", "show", st.ID)
	r.check(t, 0, "waiting:")
	for _, want := range []string{st.ID, "receiver", "poll (RFC 8936)", "status:      enabled", "waiting:     1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, h.DB.URL, "", "signals", "streams", "show", st.ID, "--json")
	r.check(t, 0, "")
	var one ssf.State
	if err := json.Unmarshal([]byte(r.stdout), &one); err != nil || one.StreamID != st.ID || one.Backlog != 1 || one.ClientID != "receiver" {
		t.Fatalf("show --json = %+v, %v\n%s", one, err, r.stdout)
	}
	runCLI(t, h.DB.URL, "", "signals", "streams", "show", "nope").check(t, 1, `no stream "nope"`)
	runCLI(t, h.DB.URL, "", "signals", "streams", "show").check(t, 2, "name one stream ID")
	runCLI(t, h.DB.URL, "", "signals", "streams", "show", st.ID, "extra").check(t, 2, "unexpected argument")
}
