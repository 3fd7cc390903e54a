package catcher_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/demoapp/catcher"
	"github.com/idp/idp/internal/mail"
)

// TestCatcher: mail the provider's Sender delivers (tls=none, as make run
// configures it) shows on the page with its link clickable and escaped.
func TestCatcher(t *testing.T) {
	c := &catcher.Catcher{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := c.SMTP("")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg, err := mail.ParseConfig("smtp://"+ln.Addr().String()+"?tls=none", "Demo <login@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.Render(mail.Brand{Name: "idp <demo>"}, mail.Action{Kind: mail.KindPasswordReset, To: "demo@example.com",
		Issuer: "http://localhost:8080", Path: "/login/reset", Token: "abc", Expires: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&mail.Sender{Config: cfg}).Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := c.Messages()
	if len(got) != 1 || got[0].To != "demo@example.com" || !strings.Contains(got[0].Subject, "idp <demo>") {
		t.Fatalf("caught %+v", got)
	}
	ts := httptest.NewServer(c)
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if !strings.Contains(page, `<a href="http://localhost:8080/login/reset?token=abc">`) {
		t.Errorf("the page lacks the clickable link:\n%s", page)
	}
	if strings.Contains(page, "idp <demo>") || !strings.Contains(page, "idp &lt;demo&gt;") {
		t.Errorf("the subject is not escaped:\n%s", page)
	}
}
