package ssf_test

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/sgnl-ai/caep.dev/secevent/pkg/schemes/caep"

	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/ssf"
)

// TestAccountEvents: a person's own change of password, and an
// administrator's temporary password, disable, enable and delete, each
// reach a poll stream as the CAEP and RISC events they are, verified by
// the independent receiver.
func TestAccountEvents(t *testing.T) {
	h := servertest.New(t)
	rc := newReceiver(t, h, "receiver", ssf.Scope)
	ops := adminClient(t, h, "ops")
	u := h.CreateUser("ann@example.com", password)
	id := rc.must(http.StatusCreated, "POST", "/ssf/streams", map[string]any{
		"delivery": map[string]any{"method": ssf.DeliveryPoll}})["stream_id"].(string)
	rc.must(http.StatusOK, "POST", "/ssf/subjects:add", map[string]any{"stream_id": id,
		"subject": map[string]any{"format": "email", "email": "ann@example.com"}})

	// The person, on /account.
	br := servertest.NewBrowser(t)
	p := br.SignIn(h.Issuer+"/account", u.Email, password)
	const next = "a new and longer passphrase"
	if p = br.Post(h.Issuer+"/account/password", url.Values{"csrf_token": {p.CSRF(t)}, "current_password": {password},
		"new_password": {next}, "confirm_password": {next}}); p.Status != http.StatusOK {
		t.Fatalf("change password: %d\n%s", p.Status, p.Body)
	}
	// The administrator.
	ops.must(http.StatusOK, "POST", "/admin/api/users/"+u.ID+"/password", map[string]any{"password": "temporary passphrase 1", "temporary": true})
	ops.must(http.StatusOK, "POST", "/admin/api/users/"+u.ID+"/disable", nil)
	ops.must(http.StatusOK, "POST", "/admin/api/users/"+u.ID+"/enable", nil)
	ops.must(http.StatusOK, "DELETE", "/admin/api/users/"+u.ID, nil)

	sets, more := rc.poll(map[string]any{"returnImmediately": true})
	if more {
		t.Error("moreAvailable with fewer than 100 events")
	}
	got := map[string][]string{} // event type → initiators of CAEP events, "" for RISC ones
	for _, raw := range sets {
		set := verifySET(t, raw, h.Issuer+"/.well-known/jwks.json", h.Issuer, "receiver")
		who := ""
		switch e := set.Event.(type) {
		case *caep.CredentialChangeEvent:
			ie, _ := e.Metadata.GetInitiatingEntity()
			who = ie.String() + " " + string(e.CredentialType) + " " + string(e.ChangeType)
		case *caep.SessionRevokedEvent:
			ie, _ := e.Metadata.GetInitiatingEntity()
			who = ie.String()
		}
		got[string(set.Event.Type())] = append(got[string(set.Event.Type())], who)
	}
	want := map[string]int{
		ssf.EventCredentialChange:                2, // the person's and the administrator's
		ssf.EventSessionRevoked:                  1, // the /account session, at the administrator's password
		ssf.EventAccountCredentialChangeRequired: 1,
		ssf.EventAccountDisabled:                 1,
		ssf.EventAccountEnabled:                  1,
		ssf.EventAccountPurged:                   1,
	}
	for typ, n := range want {
		if len(got[typ]) != n {
			t.Errorf("%d %s events, want %d (all: %v)", len(got[typ]), typ, n, got)
		}
	}
	changes := map[string]bool{}
	for _, c := range got[ssf.EventCredentialChange] {
		changes[c] = true
	}
	if !reflect.DeepEqual(changes, map[string]bool{"user password update": true, "admin password update": true}) {
		t.Errorf("credential changes %v, want the user's and the admin's password updates", changes)
	}
}
