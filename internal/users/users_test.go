package users_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/users"
)

const password = "correct horse battery"

// tracedStore is newStore on a pool whose round trips are counted.
func tracedStore(t *testing.T) (*users.Store, *dbtest.RoundTrips) {
	t.Helper()
	pool, c := dbtest.TracedPool(t, dbtest.New(t).URL)
	clk := clocktest.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	s := users.NewStore(pool)
	s.Now = clk.Now
	s.Limiter.Now = clk.Now
	return s, c
}

// newStore returns a Store on a fresh database whose store and throttle
// share a settable clock.
func newStore(t *testing.T) (*users.Store, *clocktest.Clock) {
	t.Helper()
	clk := clocktest.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	s := users.NewStore(dbtest.New(t).Pool)
	s.Now = clk.Now
	s.Limiter.Now = clk.Now
	return s, clk
}

func mustCreate(t *testing.T, s *users.Store, email string) users.User {
	t.Helper()
	u, err := s.Create(context.Background(), users.NewUser{Email: email, Name: "Ada", Password: password})
	if err != nil {
		t.Fatalf("Create(%q): %v", email, err)
	}
	return u
}

func count(t *testing.T, s *users.Store) int {
	t.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM password_credentials)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStore_Create(t *testing.T) {
	ctx := context.Background()

	t.Run("round trip", func(t *testing.T) {
		s, clk := newStore(t)
		u, err := s.Create(ctx, users.NewUser{Email: "  Ada@Example.com ", Name: " Ada ", Password: password, Admin: true})
		if err != nil {
			t.Fatal(err)
		}
		if u.Email != "Ada@Example.com" || u.Name != "Ada" || !u.IsAdmin || u.RequireMFA || u.Disabled() {
			t.Fatalf("created %+v", u)
		}
		if !u.CreatedAt.Equal(clk.Now()) {
			t.Fatalf("CreatedAt = %v, want the injected clock %v", u.CreatedAt, clk.Now())
		}
		for _, get := range []func() (users.User, error){
			func() (users.User, error) { return s.ByID(ctx, u.ID) },
			func() (users.User, error) { return s.ByEmail(ctx, "ada@example.COM") },
		} {
			got, err := get()
			if err != nil || got.ID != u.ID || got.Email != u.Email {
				t.Fatalf("lookup = %+v, %v; want %+v", got, err, u)
			}
		}
		list, err := s.List(ctx, 0)
		if err != nil || len(list) != 1 || list[0].ID != u.ID {
			t.Fatalf("List = %+v, %v", list, err)
		}
	})

	t.Run("duplicate email ignores case", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		_, err := s.Create(ctx, users.NewUser{Email: "ADA@example.com", Password: password})
		if !errors.Is(err, users.ErrEmailTaken) {
			t.Fatalf("err = %v, want ErrEmailTaken", err)
		}
		if n := count(t, s); n != 2 {
			t.Fatalf("%d rows, want 2 (one user, one password)", n)
		}
	})

	bad := []struct {
		name     string
		email    string
		password string
		want     error
	}{
		{"empty email", "  ", password, users.ErrInvalidEmail},
		{"no domain", "ada", password, users.ErrInvalidEmail},
		{"display name", "Ada <ada@example.com>", password, users.ErrInvalidEmail},
		{"angle brackets", "<ada@example.com>", password, users.ErrInvalidEmail},
		{"two addresses", "a@example.com, b@example.com", password, users.ErrInvalidEmail},
		{"too long", strings.Repeat("a", 250) + "@example.com", password, users.ErrInvalidEmail},
		{"empty password", "ada@example.com", "", users.ErrWeakPassword},
		{"7 characters", "ada@example.com", "1234567", users.ErrWeakPassword},
		{"7 characters in 14 bytes", "ada@example.com", "парольп", users.ErrWeakPassword},
		{"over 256 bytes", "ada@example.com", strings.Repeat("x", 257), users.ErrWeakPassword},
		{"invalid UTF-8", "ada@example.com", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", users.ErrWeakPassword},
		{"common password", "ada@example.com", "Password1", users.ErrWeakPassword},
	}
	// Nothing is written by any of them, so they share one database.
	s, _ := newStore(t)
	for _, tc := range bad {
		t.Run(tc.name+" changes nothing", func(t *testing.T) {
			_, err := s.Create(ctx, users.NewUser{Email: tc.email, Password: tc.password})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := count(t, s); n != 0 {
				t.Fatalf("%d rows written, want 0", n)
			}
		})
	}

	good := []struct{ name, password string }{
		{"8 characters", "zq8-vk3m"},
		{"8 characters in 16 bytes", "парольпа"},
		{"256 bytes", strings.Repeat("x", 256)},
		{"no composition rules", "onlylowercaseletters"},
	}
	for i, tc := range good {
		t.Run(tc.name+" accepted", func(t *testing.T) {
			email := fmt.Sprintf("user%d@example.com", i)
			if _, err := s.Create(ctx, users.NewUser{Email: email, Password: tc.password}); err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := s.Authenticate(ctx, email, tc.password, ""); err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
		})
	}
}

func TestStore_ByID(t *testing.T) {
	s, _ := newStore(t)
	for _, id := range []string{"", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "'; DROP TABLE users; --"} {
		t.Run(id, func(t *testing.T) {
			if _, err := s.ByID(context.Background(), id); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("ByID(%q) err = %v, want ErrNotFound", id, err)
			}
		})
	}
}

func TestStore_Authenticate(t *testing.T) {
	ctx := context.Background()
	const ip = "192.0.2.7"

	t.Run("ok ignores email case", func(t *testing.T) {
		s, _ := newStore(t)
		u := mustCreate(t, s, "ada@example.com")
		got, err := s.Authenticate(ctx, " ADA@example.com", password, ip)
		if err != nil || got.ID != u.ID {
			t.Fatalf("Authenticate = %+v, %v", got, err)
		}
	})

	t.Run("wrong password and unknown user give the same error", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		_, errWrong := s.Authenticate(ctx, "ada@example.com", "wrong password", ip)
		_, errUnknown := s.Authenticate(ctx, "bob@example.com", password, ip)
		_, errLong := s.Authenticate(ctx, "ada@example.com", strings.Repeat("x", 10000), ip)
		for _, err := range []error{errWrong, errUnknown, errLong} {
			if !errors.Is(err, users.ErrInvalidCredentials) {
				t.Fatalf("err = %v, want ErrInvalidCredentials", err)
			}
		}
		if errWrong.Error() != errUnknown.Error() {
			t.Fatalf("messages differ: %q vs %q", errWrong, errUnknown)
		}
		// All three count against the address.
		if n, _ := s.Limiter.Failures(ctx, users.AddressKey(ip)); n != 3 {
			t.Fatalf("address failures = %d, want 3", n)
		}
	})

	t.Run("throttled after the free failures", func(t *testing.T) {
		s, clk := newStore(t)
		mustCreate(t, s, "ada@example.com")
		for i := 0; i <= s.Limiter.Free; i++ {
			if _, err := s.Authenticate(ctx, "ada@example.com", "wrong password", ip); !errors.Is(err, users.ErrInvalidCredentials) {
				t.Fatalf("attempt %d: err = %v, want ErrInvalidCredentials", i+1, err)
			}
		}
		// Even the right password is refused, from another address too:
		// the account key is blocked.
		_, err := s.Authenticate(ctx, "ada@example.com", password, "198.51.100.1")
		var te *users.ThrottledError
		if !errors.As(err, &te) || te.RetryAfter < s.Limiter.Base {
			t.Fatalf("err = %v, want ThrottledError of at least %v", err, s.Limiter.Base)
		}
		clk.Advance(te.RetryAfter)
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ip); err != nil {
			t.Fatalf("after waiting: %v", err)
		}
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != 0 {
			t.Fatalf("account failures after success = %d, want 0", n)
		}
	})

	t.Run("unknown accounts are throttled too", func(t *testing.T) {
		s, _ := newStore(t)
		for i := 0; i <= s.Limiter.Free; i++ {
			s.Authenticate(ctx, "nobody@example.com", "guess", "")
		}
		var te *users.ThrottledError
		if _, err := s.Authenticate(ctx, "nobody@example.com", "guess", ""); !errors.As(err, &te) {
			t.Fatalf("err = %v, want ThrottledError", err)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		s, _ := newStore(t)
		u := mustCreate(t, s, "ada@example.com")
		if err := s.SetDisabled(ctx, u.ID, true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ip); !errors.Is(err, users.ErrDisabled) {
			t.Fatalf("right password: err = %v, want ErrDisabled", err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", "wrong password", ip); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Fatalf("wrong password: err = %v, want ErrInvalidCredentials", err)
		}
		if err := s.SetDisabled(ctx, u.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ip); err != nil {
			t.Fatalf("re-enabled: %v", err)
		}
	})

	// The list of common passwords judges a password being chosen: one
	// stored before it (or before it grew) still signs in.
	t.Run("common password stored earlier still signs in", func(t *testing.T) {
		s, _ := newStore(t)
		u := mustCreate(t, s, "ada@example.com")
		const common = "baseball1"
		if err := s.SetPassword(ctx, u.ID, common, false); !errors.Is(err, users.ErrWeakPassword) {
			t.Fatalf("SetPassword(%q) err = %v, want ErrWeakPassword: the test needs a listed password", common, err)
		}
		h, err := users.HashPassword(ctx, common)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pool.Exec(ctx, `UPDATE password_credentials SET hash = $2 WHERE user_id = $1`, u.ID, h); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", common, ip); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	})

	t.Run("old parameters are upgraded", func(t *testing.T) {
		s, _ := newStore(t)
		u := mustCreate(t, s, "ada@example.com")
		// A hash made with cheaper, older parameters.
		h := phc(password, 8192, 1)
		if _, err := s.Pool.Exec(ctx, `UPDATE password_credentials SET hash = $2 WHERE user_id = $1`, u.ID, h); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ip); err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := s.Pool.QueryRow(ctx, `SELECT hash FROM password_credentials WHERE user_id = $1`, u.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stored, ",t=3,") {
			t.Fatalf("hash not upgraded: %s", stored)
		}
	})
}

func TestStore_SignIn(t *testing.T) {
	ctx := context.Background()
	const ip = "192.0.2.7"

	t.Run("second factor", func(t *testing.T) {
		s, _ := newStore(t)
		tests := []struct {
			name, email string
			credential  string // "", "pending" or "confirmed"
			want        bool
		}{
			{"none", "none@example.com", "", false},
			{"set-up not confirmed", "pending@example.com", "pending", false},
			{"confirmed", "confirmed@example.com", "confirmed", true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				u := mustCreate(t, s, tc.email)
				if tc.credential != "" {
					if _, err := s.Pool.Exec(ctx, `
						INSERT INTO totp_credentials (user_id, secret_encrypted, confirmed_at)
						VALUES ($1, 'x', CASE WHEN $2 THEN now() END)`, u.ID, tc.credential == "confirmed"); err != nil {
						t.Fatal(err)
					}
				}
				si, err := s.SignIn(ctx, tc.email, password, ip)
				if err != nil || si.User.ID != u.ID {
					t.Fatalf("SignIn = %+v, %v", si.User, err)
				}
				if si.SecondFactor != tc.want {
					t.Fatalf("SecondFactor = %v, want %v", si.SecondFactor, tc.want)
				}
			})
		}
	})

	succeed := func(t *testing.T, s *users.Store, si users.SignIn) {
		t.Helper()
		err := db.Pipelined(ctx, s.Pool, func(ctx context.Context) error {
			si.QueueSucceeded(ctx)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a success gives its reservation back", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		si, err := s.SignIn(ctx, "ada@example.com", password, ip)
		if err != nil {
			t.Fatal(err)
		}
		// Counted before the password was checked, until the success is sent.
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != 1 {
			t.Fatalf("account failures while the sign-in is in flight = %d, want 1 (the reservation)", n)
		}
		succeed(t, s, si)
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != 0 {
			t.Fatalf("account failures after the success = %d, want 0", n)
		}
	})

	t.Run("success forgets the account's failures, not the address's", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		if _, err := s.SignIn(ctx, "ada@example.com", "wrong password", ip); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Fatalf("wrong password: err = %v, want ErrInvalidCredentials", err)
		}
		si, err := s.SignIn(ctx, "ada@example.com", password, ip)
		if err != nil {
			t.Fatal(err)
		}
		// Not yet sent: the failure and the reservation still count.
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != 2 {
			t.Fatalf("account failures before the success is sent = %d, want 2", n)
		}
		succeed(t, s, si)
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != 0 {
			t.Fatalf("account failures after the success = %d, want 0", n)
		}
		if n, _ := s.Limiter.Failures(ctx, users.AddressKey(ip)); n != 1 {
			t.Fatalf("address failures after the success = %d, want 1", n)
		}
	})

	t.Run("concurrent wrong passwords are checked no more than the throttle allows", func(t *testing.T) {
		// Forty guesses at once, each as its own sign-in, used to be hashed
		// and checked all forty: the throttle was read before the hash and
		// written after it.
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		const n = 40
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := s.SignIn(ctx, "ada@example.com", fmt.Sprintf("wrong password %d", i), fmt.Sprintf("198.51.100.%d", i))
				errs <- err
			}()
		}
		checked, throttled := 0, 0
		for range n {
			var te *users.ThrottledError
			switch err := <-errs; {
			case errors.Is(err, users.ErrInvalidCredentials):
				checked++
			case errors.As(err, &te):
				throttled++
			default:
				t.Fatalf("unexpected answer: %v", err)
			}
		}
		if checked != s.Limiter.Free+1 || throttled != n-checked {
			t.Fatalf("%d guesses checked and %d throttled, want %d checked (the free ones and the next)", checked, throttled, s.Limiter.Free+1)
		}
	})

	t.Run("throttled before the password is checked", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		for i := 0; i <= s.Limiter.Free; i++ {
			s.SignIn(ctx, "ada@example.com", "wrong password", ip)
		}
		// A wrong guess during the delay is not judged, so not counted.
		var te *users.ThrottledError
		if _, err := s.SignIn(ctx, "ada@example.com", "another wrong password", "198.51.100.1"); !errors.As(err, &te) {
			t.Fatalf("err = %v, want ThrottledError", err)
		}
		if n, _ := s.Limiter.Failures(ctx, "pwd-user:ada@example.com"); n != s.Limiter.Free+1 {
			t.Fatalf("account failures = %d, want %d: a throttled guess was counted", n, s.Limiter.Free+1)
		}
		if n, _ := s.Limiter.Failures(ctx, users.AddressKey("198.51.100.1")); n != 0 {
			t.Fatalf("address failures = %d, want 0: a throttled guess was counted", n)
		}
	})

	t.Run("throttled by address", func(t *testing.T) {
		s, _ := newStore(t)
		mustCreate(t, s, "ada@example.com")
		// Guesses at many accounts from one address slow that address down,
		// for every account.
		for i := 0; i <= s.Limiter.Free; i++ {
			s.SignIn(ctx, fmt.Sprintf("guess%d@example.com", i), "guess", ip)
		}
		var te *users.ThrottledError
		if _, err := s.SignIn(ctx, "ada@example.com", password, ip); !errors.As(err, &te) {
			t.Fatalf("from the guessing address: err = %v, want ThrottledError", err)
		}
		if _, err := s.SignIn(ctx, "ada@example.com", password, "198.51.100.1"); err != nil {
			t.Fatalf("from another address: %v", err)
		}
	})
}

// SignIn is on the sign-in's hot path: a right password costs one round
// trip, a wrong one two (the second counts the failure for both keys).
func TestStore_SignInRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, trips := tracedStore(t)
	mustCreate(t, s, "ada@example.com")
	tests := []struct {
		name, email, password string
		want                  error
		trips                 int64
	}{
		{"right password", "ada@example.com", password, nil, 1},
		{"wrong password", "ada@example.com", "wrong password", users.ErrInvalidCredentials, 2},
		{"unknown account", "bob@example.com", password, users.ErrInvalidCredentials, 2},
		{"right password after a failure", "ada@example.com", password, nil, 1},
	}
	for _, tc := range tests {
		var err error
		n := trips.Count(func() { _, err = s.SignIn(ctx, tc.email, tc.password, "192.0.2.7") })
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if n != tc.trips {
			t.Errorf("%s: %d round trips, want %d", tc.name, n, tc.trips)
		}
	}
}

func TestStore_SetPassword(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	const next = "another long passphrase"

	for _, weak := range []struct{ name, password string }{
		{"short", "short"},
		{"common", "PASSWORD123"},
	} {
		t.Run(weak.name+" password changes nothing", func(t *testing.T) {
			if err := s.SetPassword(ctx, u.ID, weak.password, false); !errors.Is(err, users.ErrWeakPassword) {
				t.Fatalf("err = %v, want ErrWeakPassword", err)
			}
			if _, err := s.Authenticate(ctx, "ada@example.com", weak.password, ""); !errors.Is(err, users.ErrInvalidCredentials) {
				t.Fatalf("refused password: err = %v, want ErrInvalidCredentials", err)
			}
			if _, err := s.Authenticate(ctx, "ada@example.com", password, ""); err != nil {
				t.Fatalf("old password: %v", err)
			}
		})
	}
	t.Run("unknown user", func(t *testing.T) {
		for _, id := range []string{"nope", "00000000-0000-0000-0000-000000000000"} {
			if err := s.SetPassword(ctx, id, next, false); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("SetPassword(%q) err = %v, want ErrNotFound", id, err)
			}
		}
	})
	t.Run("new password replaces the old", func(t *testing.T) {
		if err := s.SetPassword(ctx, u.ID, next, false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ""); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Fatalf("old password: err = %v, want ErrInvalidCredentials", err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", next, ""); err != nil {
			t.Fatalf("new password: %v", err)
		}
	})
}

func TestStore_VerifyPassword(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	tests := []struct {
		name, id, password string
		want               error
	}{
		{"right", u.ID, password, nil},
		{"wrong", u.ID, "wrong password", users.ErrInvalidCredentials},
		{"malformed id", "x", password, users.ErrNotFound},
		{"unknown id", "00000000-0000-0000-0000-000000000000", password, users.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.VerifyPassword(ctx, tc.id, tc.password); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("shares the sign-in throttle", func(t *testing.T) {
		for i := 0; i <= s.Limiter.Free; i++ {
			s.VerifyPassword(ctx, u.ID, "wrong password")
		}
		var te *users.ThrottledError
		if err := s.VerifyPassword(ctx, u.ID, password); !errors.As(err, &te) {
			t.Fatalf("err = %v, want ThrottledError", err)
		}
		if _, err := s.Authenticate(ctx, "ada@example.com", password, ""); !errors.As(err, &te) {
			t.Fatalf("Authenticate err = %v, want ThrottledError", err)
		}
	})
}

func TestStore_SetFlags(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	u := mustCreate(t, s, "ada@example.com")

	if err := s.SetRequireMFA(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	disabledAt := clk.Now()
	clk.Advance(time.Hour)
	// Disabling again keeps the first time.
	if err := s.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	got, err := s.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.RequireMFA || got.DisabledAt == nil || !got.DisabledAt.Equal(disabledAt) {
		t.Fatalf("got %+v, want RequireMFA and DisabledAt %v", got, disabledAt)
	}
	for name, err := range map[string]error{
		"SetDisabled":   s.SetDisabled(ctx, "00000000-0000-0000-0000-000000000000", true),
		"SetRequireMFA": s.SetRequireMFA(ctx, "bad", true),
	} {
		if !errors.Is(err, users.ErrNotFound) {
			t.Errorf("%s on unknown user: err = %v, want ErrNotFound", name, err)
		}
	}
}

// TestStore_TemporaryPassword: a password set as temporary asks for a new
// one at sign-in, and stops working TemporaryPasswordLifetime after it was
// set; the person's own password has no such limit.
func TestStore_TemporaryPassword(t *testing.T) {
	s, clk := newStore(t)
	ctx := t.Context()
	const temporary, own = "given by the help desk", "chosen by ada herself"
	u, err := s.Create(ctx, users.NewUser{Email: "ada@example.com", Password: temporary, MustChangePassword: true})
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.SignIn(ctx, u.Email, temporary, "")
	if err != nil || !si.MustChangePassword {
		t.Fatalf("SignIn with a new account's temporary password = %+v, %v; want it accepted and marked", si, err)
	}
	clk.Advance(users.TemporaryPasswordLifetime - time.Second)
	if _, err := s.SignIn(ctx, u.Email, temporary, ""); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	clk.Advance(time.Second)
	if _, err := s.SignIn(ctx, u.Email, temporary, ""); !errors.Is(err, users.ErrPasswordExpired) {
		t.Fatalf("at expiry: %v, want ErrPasswordExpired", err)
	}
	if _, err := s.SignIn(ctx, u.Email, "not the password", ""); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a wrong password after expiry: %v, want ErrInvalidCredentials (expiry tells only who knows the password)", err)
	}

	// An administrator sets a new temporary one: a fresh lifetime.
	if err := s.SetPassword(ctx, u.ID, temporary+" again", true); err != nil {
		t.Fatal(err)
	}
	if si, err := s.SignIn(ctx, u.Email, temporary+" again", ""); err != nil || !si.MustChangePassword {
		t.Fatalf("a new temporary password: %+v, %v", si, err)
	}
	// The person's own has no expiry and asks for nothing.
	if err := s.SetPassword(ctx, u.ID, own, false); err != nil {
		t.Fatal(err)
	}
	clk.Advance(100 * users.TemporaryPasswordLifetime)
	if si, err := s.SignIn(ctx, u.Email, own, ""); err != nil || si.MustChangePassword {
		t.Fatalf("their own password later: %+v, %v; want accepted, nothing asked", si, err)
	}
}

func TestAddressKey(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.7", "pwd-ip:192.0.2.7"},
		{"::ffff:192.0.2.7", "pwd-ip:192.0.2.7"},
		// One subscriber holds a whole /64: hopping through it is one client.
		{"2001:db8:1:2:aaaa::1", "pwd-ip:2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "pwd-ip:2001:db8:1:2::/64"},
		{"fe80::1%eth0", "pwd-ip:fe80::/64"},
		{"not an address", "pwd-ip:not an address"},
	} {
		if got := users.AddressKey(tt.addr); got != tt.want {
			t.Errorf("AddressKey(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
