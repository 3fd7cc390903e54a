package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/idp/idp/internal/servertest"
)

// TestUsersRequireMFA: an administrator requires 2FA of one user; their next
// sign-in stops at enrollment before any app; --off lifts it.
func TestUsersRequireMFA(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", "correct horse battery")
	app := h.NewRP("app")
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(args, "--database-url", h.DB.URL), func(string) string { return "" },
			strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	if out, err := cli("users", "require-mfa", "--email", "alice@example.com"); err != nil || !strings.Contains(out, "must now use") {
		t.Fatalf("require-mfa: %v\n%s", err, out)
	}
	p := servertest.NewBrowser(t).SignIn(app.AuthURL().URL, "alice@example.com", "correct horse battery")
	if p.URL.Path != "/login/enroll" {
		t.Fatalf("after the password: %s, want the enrollment page", p.URL)
	}

	if _, err := cli("users", "require-mfa", "--email", "alice@example.com", "--off"); err != nil {
		t.Fatal(err)
	}
	a := app.AuthURL()
	app.Code(t, servertest.NewBrowser(t).SignIn(a.URL, "alice@example.com", "correct horse battery"), a)

	if out, err := cli("users", "require-mfa", "--email", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Fatalf("unknown user: err %v\n%s", err, out)
	}
}
