package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/internal/verify"
)

// TestService_Confirm: a link confirmed twice at once verifies once; the
// other confirmation is told the link was used. A link to an address the
// account no longer has is stale.
func TestService_Confirm(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	box, err := secrets.New("verify-test-secret-0123456789-abcdefghij", mail.SecretPurpose)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	svc := &verify.Service{Pool: d.Pool, Mailer: &mail.Mailer{Pool: d.Pool, Issuer: "https://login.example.com", Box: box, Now: clock}, Now: clock}
	store := users.NewStore(d.Pool)
	ann, err := store.Create(ctx, users.NewUser{Email: "ann@example.com", Password: "a long enough password 1"})
	if err != nil {
		t.Fatal(err)
	}
	// token queues a link as account creation does and reads its token
	// back from the sealed outbox row, as the delivery does.
	token := func(queue func(ctx context.Context) error) string {
		t.Helper()
		if err := db.Tx(ctx, d.Pool, queue); err != nil {
			t.Fatal(err)
		}
		var payload []byte
		if err := d.Pool.QueryRow(ctx, `SELECT payload FROM outbox WHERE kind = $1 ORDER BY id DESC LIMIT 1`, mail.OutboxKind).Scan(&payload); err != nil {
			t.Fatal(err)
		}
		var j mail.Job
		if err := json.Unmarshal(payload, &j); err != nil {
			t.Fatal(err)
		}
		tok, err := box.Open(j.SealedToken, []byte("mail\x00"+j.Kind+"\x00"+j.To+"\x00"+j.Path))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}

	t.Run("concurrent confirmations", func(t *testing.T) {
		tok := token(func(ctx context.Context) error { return svc.Queue(ctx, ann.ID) })
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = svc.Confirm(ctx, tok) }()
		}
		wg.Wait()
		ok, used := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, verify.ErrUsedLink):
				used++
			default:
				t.Errorf("confirm: %v", err)
			}
		}
		if ok != 1 || used != 1 {
			t.Fatalf("%d confirmed, %d told used; want one each", ok, used)
		}
	})

	t.Run("stale after a change", func(t *testing.T) {
		old := token(func(ctx context.Context) error { return svc.Queue(ctx, ann.ID) })
		change := token(func(ctx context.Context) error { return svc.RequestChange(ctx, ann.ID, "ann@new.example.com") })
		if _, err := svc.Confirm(ctx, change); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Confirm(ctx, old); !errors.Is(err, verify.ErrStaleLink) {
			t.Fatalf("a link to the old address: %v, want ErrStaleLink", err)
		}
		if err := svc.RequestChange(ctx, ann.ID, "ANN@new.example.com"); !errors.Is(err, verify.ErrSameEmail) {
			t.Fatalf("a change to the own address: %v, want ErrSameEmail", err)
		}
	})
}
