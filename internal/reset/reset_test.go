package reset_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/users"
)

type fixture struct {
	svc   *reset.Service
	users *users.Store
	box   *secrets.Box
	db    *dbtest.DB
	now   time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	d := dbtest.New(t)
	box, err := secrets.New("reset-test-secret-0123456789-abcdefghij", mail.SecretPurpose)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: d, box: box, now: time.Now()}
	clock := func() time.Time { return f.now }
	m := &mail.Mailer{Pool: d.Pool, Issuer: "https://login.example.com", Box: box, Now: clock}
	f.svc = reset.New(d.Pool, m, clock)
	f.users = users.NewStore(d.Pool)
	return f
}

// token reads the newest queued mail's token back, as its delivery does.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	var payload []byte
	if err := f.db.Pool.QueryRow(context.Background(),
		`SELECT payload FROM outbox WHERE kind = $1 ORDER BY id DESC LIMIT 1`, mail.OutboxKind).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var j mail.Job
	if err := json.Unmarshal(payload, &j); err != nil {
		t.Fatal(err)
	}
	tok, err := f.box.Open(j.SealedToken, []byte("mail\x00"+j.Kind+"\x00"+j.To+"\x00"+j.Path))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func TestService_Redeem(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	ann, err := f.users.Create(ctx, users.NewUser{Email: "Ann@Example.com", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Request(ctx, "ann@example.com", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	tok := f.token(t)

	t.Run("concurrent redemptions: one wins", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				id, err := f.svc.Redeem(ctx, tok)
				if err == nil && id != ann.ID {
					err = errors.New("redeemed for " + id)
				}
				results <- err
			})
		}
		wg.Wait()
		close(results)
		won := 0
		for err := range results {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, reset.ErrUsedLink):
				t.Errorf("a losing redemption: %v, want ErrUsedLink", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d redemptions succeeded, want 1", won)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		if err := f.svc.Request(ctx, "ann@example.com", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		tok := f.token(t)
		f.now = f.now.Add(reset.LinkLifetime)
		defer func() { f.now = f.now.Add(-reset.LinkLifetime) }()
		if _, err := f.svc.Check(ctx, tok); !errors.Is(err, reset.ErrExpiredLink) {
			t.Fatalf("at 30 minutes: %v, want ErrExpiredLink", err)
		}
	})

	t.Run("unknown, malformed, oversized", func(t *testing.T) {
		for _, tok := range []string{"", "nope", strings.Repeat("a", 10000)} {
			if _, err := f.svc.Redeem(ctx, tok); !errors.Is(err, reset.ErrUnknownLink) {
				t.Errorf("%.10q: %v, want ErrUnknownLink", tok, err)
			}
		}
	})

	t.Run("not an address", func(t *testing.T) {
		if err := f.svc.Request(ctx, "ann at example", "192.0.2.1"); !errors.Is(err, users.ErrInvalidEmail) {
			t.Fatalf("got %v", err)
		}
	})
}
