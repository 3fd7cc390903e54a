package ops

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/dbtest"
)

func TestProbe(t *testing.T) {
	ctx := context.Background()
	t.Run("database up: client errors reuse the answer, server errors ask again", func(t *testing.T) {
		p := &Probe{Pool: dbtest.New(t).Pool, TTL: time.Minute}
		// pings counts the pings fn made: each one moves p.checked.
		pings := func(fn func()) int {
			n, last := 0, p.checked
			for range 3 {
				fn()
				if p.checked != last {
					n, last = n+1, p.checked
				}
			}
			return n
		}
		if n := pings(func() {
			if !p.Up(ctx, false) {
				t.Fatal("database reported down")
			}
		}); n != 1 {
			t.Errorf("%d pings for three client errors, want 1", n)
		}
		if n := pings(func() { p.Up(ctx, true) }); n != 3 {
			t.Errorf("%d pings for three server errors while up, want 3", n)
		}
	})
	t.Run("database down: every error reuses the answer", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		p := &Probe{Pool: pool, TTL: time.Minute}
		if p.Up(ctx, true) {
			t.Fatal("unreachable database reported up")
		}
		checked := p.checked
		if p.Up(ctx, true) || p.Up(ctx, false) || p.checked != checked {
			t.Error("a known outage was pinged again within the TTL")
		}
	})
}
