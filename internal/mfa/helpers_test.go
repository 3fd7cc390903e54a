package mfa

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/throttle"
)

// t0 is the middle of a time step (Unix 1893456000 is a multiple of 30), so
// moving a few seconds either way stays in the same step.
var t0 = time.Date(2030, 1, 1, 0, 0, 15, 0, time.UTC)

const (
	step       = totpPeriod * time.Second
	testSecret = "test-server-secret-0123456789abcdef"
)

type fixture struct {
	m     *TOTP
	clock *clocktest.Clock
	pool  *pgxpool.Pool
	url   string // the test database, for a second pool
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	d := dbtest.New(t)
	box, err := secrets.New(testSecret, "totp")
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(t0)
	lim := throttle.Default(d.Pool)
	lim.Now = clk.Now
	return &fixture{
		m:     &TOTP{Pool: d.Pool, Box: box, Issuer: "idp test", Limiter: lim, Now: clk.Now},
		clock: clk,
		pool:  d.Pool,
		url:   d.URL,
	}
}

// traced returns f's TOTP on a pool of the same database whose round trips
// are counted.
func (f *fixture) traced(t testing.TB) (*TOTP, *dbtest.RoundTrips) {
	t.Helper()
	pool, c := dbtest.TracedPool(t, f.url)
	m := *f.m
	m.Pool = pool
	lim := *f.m.Limiter
	lim.Pool = pool
	m.Limiter = &lim
	return &m, c
}

var userSeq atomic.Int64

func (f *fixture) user(t testing.TB) string {
	t.Helper()
	var id string
	email := fmt.Sprintf("user%d@example.com", userSeq.Add(1))
	if err := f.pool.QueryRow(context.Background(),
		`INSERT INTO users (email) VALUES ($1) RETURNING id::text`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// enroll runs Begin and Confirm for a new user, then moves the clock to the
// next step so the test's first code is not a replay of the confirming one.
func (f *fixture) enroll(t testing.TB) (userID, secret string, recovery []string) {
	t.Helper()
	ctx := context.Background()
	userID = f.user(t)
	e, err := f.m.Begin(ctx, userID, "test", "someone@example.com")
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	recovery, err = f.m.Confirm(ctx, userID, "test", GenerateCode(e.Secret, f.clock.Now()))
	if err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	f.clock.Advance(step)
	return userID, e.Secret, recovery
}

// state is everything a rejected code must leave alone.
type state struct {
	confirmed bool
	lastStep  int64
	sealed    string
	remaining int
	failures  int
}

func (f *fixture) state(t testing.TB, userID string) state {
	t.Helper()
	ctx := context.Background()
	var s state
	err := f.pool.QueryRow(ctx, `
		SELECT coalesce((SELECT confirmed_at IS NOT NULL FROM totp_credentials WHERE user_id = $1), false),
		       coalesce((SELECT last_step FROM totp_credentials WHERE user_id = $1), -1),
		       coalesce((SELECT encode(secret_encrypted, 'hex') FROM totp_credentials WHERE user_id = $1), ''),
		       (SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)`,
		userID).Scan(&s.confirmed, &s.lastStep, &s.sealed, &s.remaining)
	if err != nil {
		t.Fatal(err)
	}
	s.failures, err = f.m.Limiter.Failures(ctx, throttleKey(userID))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wrongCode returns a well-formed code that matches none of the steps
// Verify accepts at now.
func wrongCode(secret string, now time.Time) string {
	valid := map[string]bool{}
	for d := -totpSkew; d <= totpSkew; d++ {
		valid[GenerateCode(secret, now.Add(time.Duration(d)*step))] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", i)
		if !valid[c] {
			return c
		}
	}
}

// race runs fn from n goroutines released at once and returns their errors.
func race(n int, fn func() error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn()
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

func isRecoveryFormat(c string) bool {
	if len(c) != 11 || c[5] != '-' {
		return false
	}
	for _, r := range strings.ReplaceAll(c, "-", "") {
		if !strings.ContainsRune(recoveryAlphabet, r) {
			return false
		}
	}
	return true
}
