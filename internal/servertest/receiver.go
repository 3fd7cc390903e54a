package servertest

import (
	"testing"
	"time"

	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/backchannel/logouttest"
	"github.com/jackc/pgx/v5"
)

// LogoutClaims are the claims of a verified logout token.
type LogoutClaims = logouttest.Claims

// Receiver is an app's back-channel logout endpoint (package logouttest).
type Receiver = logouttest.Receiver

// NewReceiver starts a receiver for clientID that verifies every token
// against the provider's published JWKS, fetched over HTTP as an app
// does, with sub and sid both required.
func (h *Harness) NewReceiver(clientID string) *Receiver {
	return logouttest.New(h.T, logouttest.Config{Issuer: h.Issuer, ClientID: clientID,
		Keys: logouttest.JWKSFrom(h.Issuer + "/.well-known/jwks.json"), Leeway: time.Minute, RequireSID: true})
}

// LogoutRow is a logout notification's outbox row as tests check it.
type LogoutRow struct {
	ID        int64
	SID       string
	ClientID  string
	Attempts  int
	Delivered bool
}

// LogoutRows lists the logout notifications queued so far, oldest first.
func (h *Harness) LogoutRows(t testing.TB) []LogoutRow {
	t.Helper()
	rows, err := h.DB.Pool.Query(h.Ctx, `
		SELECT id, sid::text, client_id, attempts, delivered_at IS NOT NULL
		FROM outbox WHERE kind = $1 ORDER BY id`, sessions.LogoutKind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogoutRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WaitDelivered waits until every queued logout notification has been
// delivered, and returns them. A row delivered on its first attempt was
// POSTed once: with every row so, no app can have been told twice, which
// a test can then assert without waiting for a duplicate that never comes.
func (h *Harness) WaitDelivered(t testing.TB) []LogoutRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := h.LogoutRows(t)
		pending := 0
		for _, r := range rows {
			if !r.Delivered {
				pending++
			}
		}
		if pending == 0 {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d logout notifications still undelivered after 10s", pending, len(rows))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
