package mail_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/secrets"
)

func TestMailer_Deliver(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	box, err := secrets.New("mailer-test-secret-0123456789-abcdefghij", mail.SecretPurpose)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m := &mail.Mailer{Brand: mail.Brand{Name: "Acme"}, Issuer: "https://login.example.com", Box: box,
		Sender: &mail.Sender{Config: srv.Config("login@example.com")}, Now: func() time.Time { return now }}
	// A job as Queue writes it, sealed by another Mailer with the same secret.
	job := func(to string, expires time.Time) mail.Job {
		j := mail.Job{Kind: mail.KindPasswordReset, To: to, Path: "/login/reset", ExpiresAt: expires}
		return j
	}
	seal := func(j mail.Job, token string) []byte {
		// Queue's sealing, reproduced through the public surface: a
		// payload sealed for one address does not open for another.
		j.SealedToken = box.Seal([]byte(token), []byte("mail\x00"+j.Kind+"\x00"+j.To+"\x00"+j.Path))
		b, _ := json.Marshal(j)
		return b
	}
	t.Run("delivered with the token unsealed", func(t *testing.T) {
		if err := m.Deliver(context.Background(), seal(job("ann@example.com", now.Add(30*time.Minute)), "tok-abc")); err != nil {
			t.Fatal(err)
		}
		if l := srv.Wait("ann@example.com", 1, 5*time.Second).Link(t); l != "https://login.example.com/login/reset?token=tok-abc" {
			t.Errorf("link %q", l)
		}
	})
	t.Run("expired", func(t *testing.T) {
		err := m.Deliver(context.Background(), seal(job("ann@example.com", now.Add(-time.Second)), "tok"))
		if !errors.Is(err, mail.ErrExpired) || !mail.Permanent(err) {
			t.Fatalf("got %v, want a permanent ErrExpired", err)
		}
	})
	t.Run("sealed for another address", func(t *testing.T) {
		var j mail.Job
		json.Unmarshal(seal(job("ann@example.com", now.Add(time.Minute)), "tok"), &j)
		j.To = "mallory@example.com"
		b, _ := json.Marshal(j)
		err := m.Deliver(context.Background(), b)
		if !errors.Is(err, mail.ErrBadJob) || !mail.Permanent(err) {
			t.Fatalf("got %v, want a permanent ErrBadJob", err)
		}
		if len(srv.To("mallory@example.com")) != 0 {
			t.Fatal("sent to the address swapped in")
		}
	})
	t.Run("refused for now", func(t *testing.T) {
		srv.Refuse(1)
		err := m.Deliver(context.Background(), seal(job("ann@example.com", now.Add(time.Minute)), "tok"))
		if err == nil || mail.Permanent(err) {
			t.Fatalf("got %v, want an error worth a retry", err)
		}
	})
}
