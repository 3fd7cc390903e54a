package mail_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/mail/mailtest"
)

func rendered(t *testing.T) mail.Message {
	t.Helper()
	m, err := mail.Render(mail.Brand{Name: "Acme", Color: "#aa3300"}, resetAction())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSender_Send(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "idp", Password: "smtp-pass"})
	s := &mail.Sender{Config: srv.Config("Acme Login <login@example.com>")}
	if err := s.Send(context.Background(), rendered(t)); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait("ann@example.com", 1, 5*time.Second)
	if !got.TLS {
		t.Error("delivered without STARTTLS")
	}
	if got.From != "login@example.com" || got.Header.Get("To") != "<ann@example.com>" {
		t.Errorf("envelope from %q, To %q", got.From, got.Header.Get("To"))
	}
	if !strings.Contains(got.Header.Get("Subject"), "Acme") || got.Header.Get("Message-Id") == "" ||
		got.Header.Get("Date") == "" || got.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("headers: %v", got.Header)
	}
	if !strings.HasPrefix(got.Header.Get("Content-Type"), "multipart/alternative") {
		t.Errorf("Content-Type %q", got.Header.Get("Content-Type"))
	}
	if link := got.Link(t); link != "https://login.example.com/login/reset?token=tok-123" {
		t.Errorf("link %q", link)
	}
	if !strings.Contains(got.HTML, `href="https://login.example.com/login/reset?token=tok-123"`) {
		t.Errorf("HTML part lacks the link:\n%s", got.HTML)
	}
}

func TestSender_Send_refusals(t *testing.T) {
	t.Run("server without STARTTLS", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{NoStartTLS: true})
		c := srv.Config("login@example.com")
		c.Security = mail.StartTLS // as smtp:// without tls=none
		err := (&mail.Sender{Config: c}).Send(context.Background(), rendered(t))
		if err == nil {
			t.Fatal("sent in the clear to a server that offers no STARTTLS")
		}
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("the server got %d messages", n)
		}
	})
	t.Run("server requires STARTTLS", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{})
		c := srv.Config("login@example.com")
		c.Security = mail.None
		if err := (&mail.Sender{Config: c}).Send(context.Background(), rendered(t)); err == nil {
			t.Fatal("the test server took mail without STARTTLS")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{Username: "idp", Password: "right"})
		c := srv.Config("login@example.com")
		c.Password = "wrong"
		if err := (&mail.Sender{Config: c}).Send(context.Background(), rendered(t)); err == nil {
			t.Fatal("sent with a wrong password")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{})
		c := srv.Config("login@example.com")
		c.RootCAs = nil
		if err := (&mail.Sender{Config: c}).Send(context.Background(), rendered(t)); err == nil {
			t.Fatal("sent to a server whose certificate nobody vouches for")
		}
	})
	t.Run("temporary failure", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{})
		srv.Refuse(1)
		s := &mail.Sender{Config: srv.Config("login@example.com")}
		if err := s.Send(context.Background(), rendered(t)); err == nil {
			t.Fatal("a 451 reported as sent")
		}
		if err := s.Send(context.Background(), rendered(t)); err != nil {
			t.Fatalf("the retry: %v", err)
		}
		if n := len(srv.Messages()); n != 1 {
			t.Fatalf("%d messages, want 1", n)
		}
	})
	t.Run("silent server times out", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close() // says nothing
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		c, err := mail.ParseConfig("smtp://127.0.0.1:"+port, "login@example.com")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = (&mail.Sender{Config: c, Timeout: 300 * time.Millisecond}).Send(context.Background(), rendered(t))
		if err == nil {
			t.Fatal("sent to a silent server")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %s with a 300ms timeout", d)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		if err := (&mail.Sender{}).Send(context.Background(), rendered(t)); err != mail.ErrNotConfigured {
			t.Fatalf("got %v", err)
		}
	})
}
