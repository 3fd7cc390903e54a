package ssf_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/users"
)

// BenchmarkRevoke_Streams measures what streams add to a revoke-all of one
// person's 100 sessions: the revocation's own transaction, which now finds
// the streams and queues one SET per session and stream.
//
//	go test -tags openssl -run '^$' -bench Revoke_Streams ./internal/ssf/
func BenchmarkRevoke_Streams(b *testing.B) {
	const sessionCount = 100
	for _, streams := range []int{0, 1, 5} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			// An instance without HTTP or background work: queueing is
			// measured, not delivery.
			ctx := context.Background()
			d := dbtest.New(b)
			pool, err := db.Open(ctx, d.URL)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pool.Close)
			srv, err := server.New(ctx, server.Config{Issuer: "http://127.0.0.1:1", Secret: "bench-server-secret-0123456789-abcdefghijkl",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
			if err != nil {
				b.Fatal(err)
			}
			u, err := srv.Users.Create(ctx, users.NewUser{Email: "ann@example.com", Password: password})
			if err != nil {
				b.Fatal(err)
			}
			store := &ssf.Store{Pool: pool}
			poll := ssf.DeliveryPoll
			for i := range streams {
				id := fmt.Sprintf("receiver-%d", i)
				if _, err := srv.Clients.Create(ctx, clients.Client{ID: id, RedirectURIs: []string{"https://r.example/cb"},
					GrantTypes: []string{"client_credentials"}, Scopes: []string{ssf.Scope}}); err != nil {
					b.Fatal(err)
				}
				if _, err := store.Create(ctx, id, ssf.Config{Method: &poll}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := pool.Exec(ctx, `
				INSERT INTO sso_sessions (cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time)
				SELECT sha256(gen_random_uuid()::text::bytea), $1, now() + interval '1 hour', now() + interval '1 day', now()
				FROM generate_series(1, $2)`, u.ID, sessionCount); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				if _, err := pool.Exec(ctx, `UPDATE sso_sessions SET revoked_at = NULL, revoked_reason = NULL`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := srv.Sessions.Revoke(ctx, sessions.Revocation{UserID: u.ID, Reason: sessions.ReasonAdminRevoke})
				if err != nil || res.Sessions != sessionCount {
					b.Fatalf("revoke: %+v %v", res, err)
				}
			}
			queued := dbtest.Value[int](b, pool, `SELECT count(*) FROM outbox WHERE kind = $1`, ssf.KindPoll)
			b.ReportMetric(float64(queued)/float64(b.N), "sets/op")
		})
	}
}
