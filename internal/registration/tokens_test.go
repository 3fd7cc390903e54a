package registration_test

import (
	"context"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/registration"
)

// TestTokens_Live: discovery's question is answered from memory for 30
// seconds, except that a token made or spent by this instance shows at
// once; a token made elsewhere (the command line) shows when the answer
// is renewed.
func TestTokens_Live(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	server := &registration.Tokens{Pool: d.Pool, Now: clock}
	cli := &registration.Tokens{Pool: d.Pool, Now: clock}
	live := func(t *testing.T, want bool) {
		t.Helper()
		got, err := server.Live(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("Live = %v, want %v", got, want)
		}
	}

	live(t, false)
	if _, err := cli.Issue(ctx, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	t.Run("made elsewhere: cached answer", func(t *testing.T) { live(t, false) })
	now = now.Add(31 * time.Second)
	t.Run("made elsewhere: renewed answer", func(t *testing.T) { live(t, true) })

	dbtest.Exec(t, d.Pool, `DELETE FROM registration_tokens`)
	live(t, true) // cached
	if _, err := server.Issue(ctx, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	t.Run("made here: at once", func(t *testing.T) { live(t, true) })
	now = now.Add(2 * time.Minute)
	t.Run("expired", func(t *testing.T) { live(t, false) })

	t.Run("bad arguments", func(t *testing.T) {
		if _, err := server.Issue(ctx, 0, 0); err == nil {
			t.Error("a token without a lifetime was made")
		}
		if _, err := server.Issue(ctx, time.Hour, -1); err == nil {
			t.Error("a token with negative uses was made")
		}
		if n := dbtest.Value[int64](t, d.Pool, `SELECT count(*) FROM registration_tokens WHERE expires_at > $1`, now); n != 0 {
			t.Errorf("%d tokens stored", n)
		}
	})
}
