package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/verify"
)

// TestUsersCreate_VerificationMail: `idp users create`, given the
// instances' mail settings, queues the account's verification mail in the
// transaction that creates it; a running instance delivers it, and its
// link verifies the address. `idp users verify-email` marks an address
// verified without mail, audited.
func TestUsersCreate_VerificationMail(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	h := servertest.New(t, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
	env := map[string]string{"IDP_SMTP_URL": smtp.URL(), "IDP_MAIL_FROM": "login@example.com",
		"IDP_SECRET": h.Srv.Config.Secret, "IDP_ISSUER": h.Issuer}
	cli := func(env map[string]string, stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(args, "--database-url", h.DB.URL), func(k string) string { return env[k] },
			strings.NewReader(stdin), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	verified := func(email string) bool {
		return dbtest.Value[bool](t, h.DB.Pool, `SELECT email_verified_at IS NOT NULL FROM users WHERE email = $1`, email)
	}

	if out, err := cli(env, "a long enough password 1\n", "users", "create", "--email", "ann@example.com", "--temporary=false"); err != nil {
		t.Fatalf("users create: %v\n%s", err, out)
	}
	link := smtp.Wait("ann@example.com", 1, 10*time.Second).Link(t)
	br := servertest.NewBrowser(t)
	p := br.Get(link)
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, `id="confirm"`)
	u, _ := url.Parse(link)
	p = br.Post(h.Issuer+verify.LinkPath, url.Values{"csrf_token": {p.CSRF(t)}, "token": {u.Query().Get("token")}})
	servertest.WantPage(t, p, verify.LinkPath, http.StatusOK, "is confirmed")
	if !verified("ann@example.com") {
		t.Fatal("the link from the CLI's mail did not verify the address")
	}

	// Without the secret nothing is queued, and the command says so.
	out, err := cli(map[string]string{"IDP_SMTP_URL": smtp.URL(), "IDP_MAIL_FROM": "login@example.com"}, "a long enough password 1\n",
		"users", "create", "--email", "bob@example.com", "--temporary=false")
	if err != nil || !strings.Contains(out, "no verification mail") {
		t.Fatalf("users create without IDP_SECRET: %v\n%s", err, out)
	}
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM email_verifications v JOIN users u ON u.id = v.user_id
		WHERE u.email = 'bob@example.com'`); n != 0 || verified("bob@example.com") {
		t.Fatalf("%d links for bob", n)
	}
	if out, err := cli(nil, "", "users", "verify-email", "--user", "bob@example.com"); err != nil || !strings.Contains(out, "verified") {
		t.Fatalf("verify-email: %v\n%s", err, out)
	}
	if !verified("bob@example.com") || dbtest.Value[int](t, h.DB.Pool,
		`SELECT count(*) FROM audit_log WHERE action = $1 AND actor = $2`, admin.ActionVerifyEmail, cliActor) != 1 {
		t.Fatal("verify-email did not verify bob's address with an audit record")
	}
	if _, err := cli(nil, "", "users", "verify-email", "--user", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Fatalf("unknown user: %v", err)
	}
}

// TestRun_ServeSelfSignupSettings: self-registration needs mail and a
// list of domains; each missing one is named.
func TestRun_ServeSelfSignupSettings(t *testing.T) {
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--self-signup").
		check(t, 2, "--self-signup: needs mail")
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--self-signup", "--smtp-url", "smtp://localhost:1025?tls=none",
		"--mail-from", "login@example.com").
		check(t, 2, "--signup-domains / IDP_SIGNUP_DOMAINS: is required with IDP_SELF_SIGNUP")
}
