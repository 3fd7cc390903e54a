package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// mailRow is a mail's outbox row as the tests check it.
type mailRow struct {
	Attempts  int
	Delivered bool
	Payload   string
}

// mailRows lists the mail queued so far, oldest first.
func mailRows(t *testing.T, h *servertest.Harness) []mailRow {
	return outboxRows(t, h, mail.OutboxKind)
}

// requestRows lists the reset requests queued so far, oldest first.
func requestRows(t *testing.T, h *servertest.Harness) []mailRow {
	return outboxRows(t, h, reset.OutboxKind)
}

func outboxRows(t *testing.T, h *servertest.Harness, kind string) []mailRow {
	t.Helper()
	rows, err := h.DB.Pool.Query(h.Ctx, `SELECT attempts, delivered_at IS NOT NULL, payload::text FROM outbox
		WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[mailRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitMailDelivered waits until every queued reset request is processed
// and every mail they queued (in the same transaction) is recorded
// delivered, and returns the mail rows. A row delivered on its first
// attempt was sent once: with every row so, no mail can still be on its
// way a second time.
func waitMailDelivered(t *testing.T, h *servertest.Harness) []mailRow {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		done := true
		for _, r := range append(requestRows(t, h), mailRows(t, h)...) {
			done = done && r.Delivered
		}
		if done {
			return mailRows(t, h)
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail still undelivered after 20s: requests %+v, mail %+v", requestRows(t, h), mailRows(t, h))
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		rows := waitMailDelivered(t, h)
		if len(rows) != 1 || rows[0].Attempts != 3 {
			t.Errorf("outbox rows %+v: want one, delivered at the third attempt", rows)
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
		rows := requestRows(t, h)
		if len(rows) != 1 || rows[0].Attempts != 0 || len(smtp.Messages()) != 0 {
			t.Fatalf("with no worker running: requests %+v, %d mails; want one request never attempted", rows, len(smtp.Messages()))
		}
		if !strings.Contains(rows[0].Payload, ben.Email) || dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets`) != 0 {
			t.Fatalf("the waiting request %s: want the address only, no link yet", rows[0].Payload)
		}
		// Another process on the same database delivers it.
		h2 := servertest.NewInstance(t, h.DB, func(c *server.Config) { c.Mail = smtp.Config("login@example.com") })
		link := smtp.Wait(ben.Email, 1, mailWait).Link(t)
		var token string
		if u, err := url.Parse(link); err == nil {
			token = u.Query().Get("token")
		}
		sent := waitMailDelivered(t, h)
		if token == "" || len(sent) != 1 || strings.Contains(sent[0].Payload, token) || !strings.Contains(sent[0].Payload, `"sealed_token"`) {
			t.Fatalf("the mail's outbox row %+v: want the token sealed, never in the clear", sent)
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
		rows := waitMailDelivered(t, h)
		for _, r := range append(requestRows(t, h), rows...) {
			if r.Attempts != 1 {
				t.Errorf("a row delivered at attempt %d: it may have been handled twice", r.Attempts)
			}
		}
		if got := len(smtp.Messages()); len(rows) != n || got != n {
			t.Errorf("%d rows and %d mails for %d requests", len(rows), got, n)
		}
	})
}
