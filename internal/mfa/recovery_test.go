package mfa

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestTOTP_RecoveryCodes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	t.Run("single use", func(t *testing.T) {
		uid, _, codes := f.enroll(t)
		method, err := f.m.Verify(ctx, uid, codes[3])
		if err != nil || method != MethodRecovery {
			t.Fatalf("first use = %q, %v; want %q, nil", method, err, MethodRecovery)
		}
		if _, err := f.m.Verify(ctx, uid, codes[3]); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("second use: err = %v, want ErrInvalidCode", err)
		}
		if n, err := f.m.RemainingRecoveryCodes(ctx, uid); err != nil || n != RecoveryCodeCount-1 {
			t.Fatalf("remaining = %d, %v; want %d", n, err, RecoveryCodeCount-1)
		}
	})

	t.Run("typed loosely", func(t *testing.T) {
		uid, _, codes := f.enroll(t)
		// As a person copies it from paper: upper case, no dash, spaces,
		// and o/i/l for 0/1.
		loose := func(c string) string {
			c = strings.ToUpper(strings.ReplaceAll(c, "-", " "))
			c = strings.ReplaceAll(c, "0", "O")
			return strings.ReplaceAll(c, "1", "l")
		}
		for _, c := range codes[:3] {
			if _, err := f.m.Verify(ctx, uid, loose(c)); err != nil {
				t.Errorf("Verify(%q) for %q: %v", loose(c), c, err)
			}
		}
	})

	t.Run("concurrent use of one code", func(t *testing.T) {
		uid, _, codes := f.enroll(t)
		f.m.Limiter.Free = 1000
		defer func() { f.m.Limiter.Free = 3 }()
		errs := race(16, func() error {
			_, err := f.m.Verify(ctx, uid, codes[0])
			return err
		})
		var ok int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrInvalidCode):
				t.Errorf("loser err = %v, want ErrInvalidCode", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 16 concurrent uses succeeded, want exactly 1", ok)
		}
		if n, _ := f.m.RemainingRecoveryCodes(ctx, uid); n != RecoveryCodeCount-1 {
			t.Fatalf("remaining = %d, want %d", n, RecoveryCodeCount-1)
		}
	})

	t.Run("another user's code", func(t *testing.T) {
		a, _, _ := f.enroll(t)
		_, _, codesB := f.enroll(t)
		if _, err := f.m.Verify(ctx, a, codesB[0]); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("err = %v, want ErrInvalidCode", err)
		}
	})

	t.Run("regenerate invalidates the old set", func(t *testing.T) {
		uid, _, old := f.enroll(t)
		if _, err := f.m.Verify(ctx, uid, old[0]); err != nil {
			t.Fatal(err)
		}
		fresh, err := f.m.RegenerateRecoveryCodes(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if len(fresh) != RecoveryCodeCount {
			t.Fatalf("got %d codes, want %d", len(fresh), RecoveryCodeCount)
		}
		if n, err := f.m.RemainingRecoveryCodes(ctx, uid); err != nil || n != RecoveryCodeCount {
			t.Fatalf("remaining = %d, %v; want %d", n, err, RecoveryCodeCount)
		}
		if _, err := f.m.Verify(ctx, uid, old[1]); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("old code after regenerate: err = %v, want ErrInvalidCode", err)
		}
		if m, err := f.m.Verify(ctx, uid, fresh[1]); err != nil || m != MethodRecovery {
			t.Fatalf("new code = %q, %v; want recovery, nil", m, err)
		}
	})

	t.Run("regenerate without 2FA", func(t *testing.T) {
		uid := f.user(t)
		if _, err := f.m.RegenerateRecoveryCodes(ctx, uid); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("no credential: err = %v, want ErrNotEnrolled", err)
		}
		if _, err := f.m.Begin(ctx, uid, "test", "a@example.com"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.RegenerateRecoveryCodes(ctx, uid); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("pending credential: err = %v, want ErrNotEnrolled", err)
		}
		if n, err := f.m.RemainingRecoveryCodes(ctx, uid); err != nil || n != 0 {
			t.Fatalf("remaining = %d, %v; want 0", n, err)
		}
	})

	t.Run("remaining counts down", func(t *testing.T) {
		uid, _, codes := f.enroll(t)
		for i, c := range codes {
			if _, err := f.m.Verify(ctx, uid, c); err != nil {
				t.Fatalf("code %d: %v", i, err)
			}
			if n, err := f.m.RemainingRecoveryCodes(ctx, uid); err != nil || n != RecoveryCodeCount-1-i {
				t.Fatalf("after %d uses remaining = %d, %v; want %d", i+1, n, err, RecoveryCodeCount-1-i)
			}
		}
	})

	t.Run("stored hashed", func(t *testing.T) {
		uid, _, codes := f.enroll(t)
		var n int
		canon := make([]string, len(codes))
		for i, c := range codes {
			canon[i] = strings.ReplaceAll(c, "-", "")
		}
		err := f.pool.QueryRow(ctx, `
			SELECT count(*) FROM recovery_codes
			WHERE user_id = $1 AND (encode(code_hash, 'escape') LIKE ANY($2) OR encode(code_hash, 'escape') LIKE ANY($3))`,
			uid, likeAny(codes), likeAny(canon)).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d rows hold a code in clear", n)
		}
	})
}

func likeAny(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = "%" + s + "%"
	}
	return out
}
