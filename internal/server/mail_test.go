package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// mailRow is the state of the one mail row in the outbox.
func mailRow(t *testing.T, h *servertest.Harness) (attempts int, delivered bool, payload string) {
	t.Helper()
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT attempts, delivered_at IS NOT NULL, payload::text FROM outbox WHERE kind = $1`,
		mail.OutboxKind).Scan(&attempts, &delivered, &payload); err != nil {
		t.Fatal(err)
	}
	return
}

// TestMail_Outbox: mail goes through the one outbox: retried with backoff
// after the SMTP server refuses it, kept across a restart of the
// provider between the change and the delivery, sealed while it waits,
// and sent once when two instances run.
func TestMail_Outbox(t *testing.T) {
	t.Run("retried after refusals", func(t *testing.T) {
		h, smtp := withMail(t)
		ann := h.CreateUser("ann@example.com", password)
		smtp.Refuse(2)
		forgot(t, h, servertest.NewBrowser(t), "", ann.Email)
		smtp.Wait(ann.Email, 1, 20*time.Second)
		time.Sleep(100 * time.Millisecond) // the outcome is recorded after the SMTP answer
		if attempts, delivered, _ := mailRow(t, h); attempts != 3 || !delivered {
			t.Errorf("attempts %d, delivered %v: want 3, delivered", attempts, delivered)
		}
		if n := len(smtp.To(ann.Email)); n != 1 {
			t.Errorf("%d mails, want 1", n)
		}
	})

	t.Run("kept across a restart, sealed at rest", func(t *testing.T) {
		h, smtp := withMail(t)
		ben := h.CreateUser("ben@example.com", password)
		h.StopBackground() // the instance stops right after the change
		forgot(t, h, servertest.NewBrowser(t), "", ben.Email)
		time.Sleep(300 * time.Millisecond)
		if n := len(smtp.Messages()); n != 0 {
			t.Fatalf("%d mails sent with no worker running", n)
		}
		_, delivered, payload := mailRow(t, h)
		if delivered || strings.Contains(payload, "token=") || !strings.Contains(payload, `"sealed_token"`) {
			t.Fatalf("the waiting row: delivered %v, payload %s", delivered, payload)
		}
		// Another process on the same database delivers it.
		h2 := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
		link := smtp.Wait(ben.Email, 1, mailWait).Link(t)
		var token string
		if u, err := url.Parse(link); err == nil {
			token = u.Query().Get("token")
		}
		if token == "" || strings.Contains(payload, token) {
			t.Fatal("the outbox held the link's token in the clear")
		}
		if !strings.HasPrefix(link, h2.Issuer+"/login/reset?token=") {
			t.Errorf("link %q is not the delivering instance's issuer", link)
		}
		p := servertest.NewBrowser(t).Get(link)
		servertest.WantPage(t, p, "/login/reset", http.StatusOK, "Continue")
	})

	t.Run("once with two instances", func(t *testing.T) {
		h, smtp := withMail(t)
		h2 := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
		const n = 8
		for i := range n {
			email := fmt.Sprintf("user%d@example.com", i)
			h.CreateUser(email, password)
			inst := h
			if i%2 == 1 {
				inst = h2
			}
			forgot(t, inst, servertest.NewBrowser(t), "", email)
		}
		for i := range n {
			smtp.Wait(fmt.Sprintf("user%d@example.com", i), 1, mailWait)
		}
		time.Sleep(time.Second) // long enough for a second copy to arrive
		if got := len(smtp.Messages()); got != n {
			t.Errorf("%d mails for %d requests", got, n)
		}
	})
}
