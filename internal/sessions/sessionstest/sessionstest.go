// Package sessionstest makes SSO sessions for tests of the packages above
// sessions, the way a sign-in and the authorization endpoint make them.
package sessionstest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// Create makes a session as a completed sign-in does and records that each
// of clients holds a session under it, as the authorization endpoint does,
// in one unit of work; it fails t on error. w receives the cookie (nil:
// discarded).
func Create(t testing.TB, m *sessions.Manager, w http.ResponseWriter, n sessions.NewSession, clients ...string) sessions.Session {
	t.Helper()
	if w == nil {
		w = httptest.NewRecorder()
	}
	var s sessions.Session
	err := db.Pipelined(context.Background(), m.Pool, func(ctx context.Context) error {
		s = m.QueueCreate(ctx, w, n)
		for _, c := range clients {
			m.QueueAddClient(ctx, s.ID, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sessionstest: create: %v", err)
	}
	return s
}
