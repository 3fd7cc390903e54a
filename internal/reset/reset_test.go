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

// token processes the newest request, as a worker does, and reads the
// token of the mail it queued back, as the mail's delivery does.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	var req []byte
	var at time.Time
	if err := f.db.Pool.QueryRow(context.Background(),
		`SELECT payload, created_at FROM outbox WHERE kind = $1 ORDER BY id DESC LIMIT 1`, reset.OutboxKind).Scan(&req, &at); err != nil {
		t.Fatal(err)
	}
	var r struct{ Email string }
	if err := json.Unmarshal(req, &r); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Process(context.Background(), r.Email, at); err != nil {
		t.Fatal(err)
	}
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

	t.Run("unknown address: queued alike, nothing made", func(t *testing.T) {
		before := dbtest.Value[int](t, f.db.Pool, `SELECT count(*) FROM outbox WHERE kind = $1`, mail.OutboxKind)
		if err := f.svc.Request(ctx, "nobody@example.com", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Process(ctx, "nobody@example.com", f.now); err != nil {
			t.Fatal(err)
		}
		if n := dbtest.Value[int](t, f.db.Pool, `SELECT count(*) FROM outbox WHERE kind = $1`, mail.OutboxKind); n != before {
			t.Fatalf("%d mails queued for an unknown address", n-before)
		}
	})

	t.Run("processed late", func(t *testing.T) {
		before := dbtest.Value[int](t, f.db.Pool, `SELECT count(*) FROM password_resets`)
		if err := f.svc.Process(ctx, "ann@example.com", f.now.Add(-reset.LinkLifetime)); err != nil {
			t.Fatal(err)
		}
		if dbtest.Value[int](t, f.db.Pool, `SELECT count(*) FROM password_resets`) != before {
			t.Fatal("a request processed after its 30 minutes made a link")
		}
	})

	t.Run("not an address", func(t *testing.T) {
		if err := f.svc.Request(ctx, "ann at example", "192.0.2.1"); !errors.Is(err, users.ErrInvalidEmail) {
			t.Fatalf("got %v", err)
		}
	})
}

// BenchmarkService_Request measures asking for a link for an address with
// an account and for one without: the two should cost about the same
// (the answer must not say which it was).
func BenchmarkService_Request(b *testing.B) {
	ctx := context.Background()
	d := dbtest.New(b)
	box, err := secrets.New("reset-bench-secret-0123456789-abcdefghij", mail.SecretPurpose)
	if err != nil {
		b.Fatal(err)
	}
	m := &mail.Mailer{Pool: d.Pool, Issuer: "https://login.example.com", Box: box, Now: time.Now}
	svc := reset.New(d.Pool, m, time.Now)
	// No delay ever (a zero cap): every iteration does the whole work.
	svc.Accounts.Base, svc.Accounts.Max, svc.Clients.Base, svc.Clients.Max = 0, 0, 0, 0
	store := users.NewStore(d.Pool)
	if _, err := store.Create(ctx, users.NewUser{Email: "known@example.com", Password: "a long enough password"}); err != nil {
		b.Fatal(err)
	}
	// A fresh database is slow at first: warmed up, the order of the
	// cases does not matter.
	for range 300 {
		if err := svc.Request(ctx, "warm-up@example.com", "192.0.2.1"); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct{ name, email string }{{"known", "known@example.com"}, {"unknown", "unknown@example.com"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := svc.Request(ctx, c.email, "192.0.2.1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
