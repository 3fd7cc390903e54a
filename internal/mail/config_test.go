package mail_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/idp/idp/internal/mail"
)

func TestParseConfig(t *testing.T) {
	ok := []struct {
		name, url, from string
		want            mail.Config
	}{
		{"starttls default port", "smtp://u:p@mail.example.com", "login@example.com",
			mail.Config{Host: "mail.example.com", Port: 587, Security: mail.StartTLS, Username: "u", Password: "p", From: "<login@example.com>"}},
		{"implicit tls", "smtps://mail.example.com", "Login <login@example.com>",
			mail.Config{Host: "mail.example.com", Port: 465, Security: mail.ImplicitTLS, From: `"Login" <login@example.com>`}},
		{"own port", "smtp://mail.example.com:2525", "a@example.com",
			mail.Config{Host: "mail.example.com", Port: 2525, Security: mail.StartTLS, From: "<a@example.com>"}},
		{"plain to loopback", "smtp://127.0.0.1:1025?tls=none", "a@example.com",
			mail.Config{Host: "127.0.0.1", Port: 1025, Security: mail.None, From: "<a@example.com>"}},
		{"plain to localhost", "smtp://localhost:1025?tls=none", "a@example.com",
			mail.Config{Host: "localhost", Port: 1025, Security: mail.None, From: "<a@example.com>"}},
		{"escaped password", "smtp://u%40x:p%2Fq@mail.example.com", "a@example.com",
			mail.Config{Host: "mail.example.com", Port: 587, Security: mail.StartTLS, Username: "u@x", Password: "p/q", From: "<a@example.com>"}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			got, err := mail.ParseConfig(c.url, c.from)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}

	if _, err := mail.ParseConfig("", ""); !errors.Is(err, mail.ErrNotConfigured) {
		t.Fatalf("empty: got %v, want ErrNotConfigured", err)
	}

	bad := []struct{ name, url, from, names string }{
		{"plain to a remote host", "smtp://u:secretpw@mail.example.com?tls=none", "a@example.com", "IDP_SMTP_URL"},
		{"tls=none with smtps", "smtps://127.0.0.1?tls=none", "a@example.com", "IDP_SMTP_URL"},
		{"other scheme", "http://mail.example.com", "a@example.com", "IDP_SMTP_URL"},
		{"no host", "smtp://", "a@example.com", "IDP_SMTP_URL"},
		{"bad port", "smtp://mail.example.com:99999", "a@example.com", "IDP_SMTP_URL"},
		{"unknown parameter", "smtp://mail.example.com?insecure=1", "a@example.com", "IDP_SMTP_URL"},
		{"path", "smtp://mail.example.com/x", "a@example.com", "IDP_SMTP_URL"},
		{"unparseable", "smtp://u:secretpw@mail.example.com:%zz", "a@example.com", "IDP_SMTP_URL"},
		{"url without from", "smtp://mail.example.com", "", "IDP_MAIL_FROM"},
		{"from without url", "", "a@example.com", "IDP_SMTP_URL"},
		{"bad from", "smtp://mail.example.com", "not an address", "IDP_MAIL_FROM"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := mail.ParseConfig(c.url, c.from)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, mail.ErrNotConfigured) {
				t.Fatalf("a mistake reported as not configured: %v", err)
			}
			if !strings.Contains(err.Error(), c.names) {
				t.Fatalf("error %q does not name %s", err, c.names)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestConfig_String(t *testing.T) {
	c, err := mail.ParseConfig("smtp://user:hunter2-secret@mail.example.com", "login@example.com")
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	if strings.Contains(s, "hunter2-secret") {
		t.Fatalf("String shows the password: %s", s)
	}
	if !strings.Contains(s, "user") || !strings.Contains(s, "mail.example.com:587") || !strings.Contains(s, "login@example.com") {
		t.Fatalf("String %q lacks the user, host or sender", s)
	}
	if (mail.Config{}).String() != "mail off" {
		t.Fatalf("zero Config: %q", mail.Config{}.String())
	}
}
