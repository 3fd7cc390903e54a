package servertest

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// Session gives userID an SSO session directly, as a finished sign-in
// would (no password hashed), and returns its sid and the Cookie header
// that carries it. For fuzz targets, which need a signed-in browser
// cheaply and often.
func (h *Harness) Session(t testing.TB, userID, acr string, amr ...string) (sid, cookie string) {
	t.Helper()
	w := httptest.NewRecorder()
	err := db.Pipelined(h.Ctx, h.Srv.Pool, func(ctx context.Context) error {
		sid = h.Srv.Sessions.QueueCreate(ctx, w, sessions.NewSession{UserID: userID, AuthTime: h.Srv.Config.Now(),
			AMR: amr, ACR: acr, UserAgent: "fuzz", IP: "127.0.0.1"}).ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == h.Srv.Sessions.CookieName() {
			return sid, c.Name + "=" + c.Value
		}
	}
	t.Fatal("servertest: the new session set no cookie")
	return "", ""
}
