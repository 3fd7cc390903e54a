package server_test

import (
	"net/url"
	"testing"

	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// TestInstances_SharedDatabase: two instances behind one issuer share a
// database and nothing else. Sign in through one, SSO through the other,
// revoke through either: each app is told exactly once.
func TestInstances_SharedDatabase(t *testing.T) {
	one := servertest.New(t)
	two := servertest.NewInstance(t, one.DB, func(c *server.Config) { c.Issuer = one.Issuer })
	user := one.CreateUser("alice@example.com", password)
	appA, appB, recvA, recvB := twoApps(one)
	alice := servertest.NewBrowser(t)

	inA := signInTo(t, alice, appA, recvA, "alice@example.com") // through instance one

	// App B's request goes to instance two (as a load balancer might send
	// it); the browser's session cookie is for the same host.
	b := appB.AuthURL()
	u, _ := url.Parse(b.URL)
	u.Host = mustHost(t, two.URL)
	p := alice.Get(u.String())
	if p.IsLoginForm() {
		t.Fatal("instance two asked for a password: the SSO session is not shared")
	}
	_, _, claims := appB.Exchange(t, appB.Code(t, p, b), b) // exchanged at instance one
	if claims["sid"] != inA.sid {
		t.Fatalf("sid through instance two = %v, want %s", claims["sid"], inA.sid)
	}

	// Revoke through instance two; both instances' workers race for the rows.
	res, err := two.Srv.Sessions.Revoke(two.Ctx, sessions.Revocation{UserID: user.ID, Reason: sessions.ReasonAdminRevoke, IncludeOffline: true})
	if err != nil || res.Notifications != 2 {
		t.Fatalf("revoke = %+v, %v", res, err)
	}
	recvA.WaitFor(t, 1)
	recvB.WaitFor(t, 1)
	for _, r := range one.WaitDelivered(t) {
		if r.Attempts != 1 {
			t.Errorf("notification %+v attempted more than once", r)
		}
	}
	if a, b := len(recvA.Tokens()), len(recvB.Tokens()); a != 1 || b != 1 {
		t.Fatalf("notifications: app A %d, app B %d; want one each", a, b)
	}
	inA.assertDead(t)
}

func mustHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
