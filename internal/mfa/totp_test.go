package mfa

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/secrets"
)

func TestGenerateCode(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 key "12345678901234567890": the last six
	// digits of its 8-digit vectors.
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
	}
	for _, tt := range tests {
		if got := GenerateCode(secret, time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("GenerateCode(t=%d) = %q, want %q", tt.unix, got, tt.want)
		}
	}
	if got := GenerateCode("not base32!", t0); got != "" {
		t.Errorf("GenerateCode(bad secret) = %q, want empty", got)
	}
}

func TestTOTP_Begin(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	t.Run("enrollment describes the secret", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, uid, "test", "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Secret) != 32 { // 20 bytes in unpadded base32
			t.Errorf("secret length = %d, want 32", len(e.Secret))
		}
		u, err := url.Parse(e.URI)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/idp test:alice@example.com" {
			t.Errorf("URI = %s, want otpauth://totp/idp test:alice@example.com", e.URI)
		}
		for k, want := range map[string]string{"secret": e.Secret, "issuer": "idp test", "algorithm": "SHA1", "digits": "6", "period": "30"} {
			if got := q.Get(k); got != want {
				t.Errorf("URI %s = %q, want %q", k, got, want)
			}
		}
		if png, err := e.QRPNG(); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Error("QRPNG is not a PNG")
		}
	})

	t.Run("not active until confirmed", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if on, err := f.m.Enabled(ctx, uid); err != nil || on {
			t.Fatalf("Enabled = %v, %v; want false", on, err)
		}
		if _, err := f.m.Verify(ctx, uid, GenerateCode(e.Secret, f.clock.Now())); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("Verify before confirm: err = %v, want ErrNotEnrolled", err)
		}
		if _, err := f.m.Verify(ctx, uid, "abcde-fghjk"); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("Verify recovery before confirm: err = %v, want ErrNotEnrolled", err)
		}
		if s := f.state(t, uid); s.lastStep != 0 || s.failures != 0 {
			t.Fatalf("state after refused verifies = %+v, want untouched", s)
		}
	})

	t.Run("again replaces the pending secret", func(t *testing.T) {
		uid := f.user(t)
		first, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		second, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if first.Secret == second.Secret {
			t.Fatal("second Begin kept the first secret")
		}
		if _, err := f.m.Confirm(ctx, uid, "test", wrongCode(second.Secret, f.clock.Now())); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("Confirm with a code that is wrong for the new secret: err = %v, want ErrInvalidCode", err)
		}
		if _, err := f.m.Confirm(ctx, uid, "test", GenerateCode(second.Secret, f.clock.Now())); err != nil {
			t.Fatalf("Confirm with the new secret: %v", err)
		}
	})

	t.Run("already enrolled", func(t *testing.T) {
		uid, _, _ := f.enroll(t)
		before := f.state(t, uid)
		if _, err := f.m.Begin(ctx, uid, "test", "a@example.com"); !errors.Is(err, ErrAlreadyEnrolled) {
			t.Fatalf("err = %v, want ErrAlreadyEnrolled", err)
		}
		if after := f.state(t, uid); after != before {
			t.Fatalf("Begin changed an active credential: %+v -> %+v", before, after)
		}
	})

	t.Run("secret stored encrypted", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		if err := f.pool.QueryRow(ctx, `SELECT secret_encrypted FROM totp_credentials WHERE user_id = $1`, uid).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		secretRaw, _ := b32.DecodeString(e.Secret)
		if bytes.Contains(raw, []byte(e.Secret)) || bytes.Contains(bytes.ToUpper(raw), []byte(e.Secret)) || bytes.Contains(raw, secretRaw) {
			t.Fatal("column holds the secret in clear")
		}
		if pt, err := f.m.Box.Open(raw, []byte(uid)); err != nil || string(pt) != e.Secret {
			t.Fatalf("Open with the user id = %q, %v; want the secret", pt, err)
		}
		if _, err := f.m.Box.Open(raw, []byte(f.user(t))); !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("Open bound to another user: err = %v, want ErrDecrypt", err)
		}
	})

	t.Run("user id not a uuid", func(t *testing.T) {
		if _, err := f.m.Begin(ctx, "42", "test", "a@example.com"); err == nil || !strings.Contains(err.Error(), "not a UUID") {
			t.Fatalf("err = %v, want a not-a-UUID error", err)
		}
	})

	t.Run("upper-case user id is the same user", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, strings.ToUpper(uid), "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.Confirm(ctx, uid, "test", GenerateCode(e.Secret, f.clock.Now())); err != nil {
			t.Fatalf("Confirm with the lower-case id: %v", err)
		}
	})
}

func TestTOTP_Pending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	t.Run("shows the same enrollment", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.m.Pending(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if p != e {
			t.Fatalf("Pending = %q %q, want Begin's %q %q and the same QR", p.Secret, p.URI, e.Secret, e.URI)
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := f.m.Pending(ctx, f.user(t), "test", "a@example.com"); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("err = %v, want ErrNotEnrolled", err)
		}
	})
	t.Run("confirmed secret is never shown again", func(t *testing.T) {
		uid, _, _ := f.enroll(t)
		if e, err := f.m.Pending(ctx, uid, "test", "a@example.com"); !errors.Is(err, ErrAlreadyEnrolled) || e.Secret != "" {
			t.Fatalf("Pending = %q, %v; want nothing, ErrAlreadyEnrolled", e.Secret, err)
		}
	})
}

// TestTOTP_EnrollmentOwner: a pending secret belongs to the sign-in or
// session that began it. Another one is not shown it, cannot confirm it,
// and beginning its own replaces it.
func TestTOTP_EnrollmentOwner(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const victim, holder = "session:victim", "session:stolen-cookie"

	uid := f.user(t)
	e, err := f.m.Begin(ctx, uid, victim, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := f.m.Pending(ctx, uid, holder, "a@example.com"); !errors.Is(err, ErrNotEnrolled) || p.Secret != "" {
		t.Fatalf("Pending for another owner = %q, %v; want nothing, ErrNotEnrolled", p.Secret, err)
	}
	if _, err := f.m.Confirm(ctx, uid, holder, GenerateCode(e.Secret, f.clock.Now())); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Confirm by another owner = %v, want ErrNotEnrolled", err)
	}
	other, err := f.m.Begin(ctx, uid, holder, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if other.Secret == e.Secret {
		t.Fatal("a second enrollment was shown the first one's secret")
	}
	if _, err := f.m.Pending(ctx, uid, victim, "a@example.com"); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Pending for the replaced owner = %v, want ErrNotEnrolled", err)
	}
	if _, err := f.m.Confirm(ctx, uid, holder, GenerateCode(other.Secret, f.clock.Now())); err != nil {
		t.Fatalf("Confirm by its owner: %v", err)
	}
}

func TestTOTP_Confirm(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	t.Run("valid code activates and returns recovery codes", func(t *testing.T) {
		uid := f.user(t)
		e, err := f.m.Begin(ctx, uid, "test", "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		codes, err := f.m.Confirm(ctx, uid, "test", GenerateCode(e.Secret, f.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if len(codes) != RecoveryCodeCount {
			t.Fatalf("got %d recovery codes, want %d", len(codes), RecoveryCodeCount)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			if !isRecoveryFormat(c) || seen[c] {
				t.Fatalf("recovery code %q malformed or repeated", c)
			}
			seen[c] = true
		}
		if on, err := f.m.Enabled(ctx, uid); err != nil || !on {
			t.Fatalf("Enabled = %v, %v; want true", on, err)
		}
		if s := f.state(t, uid); s.lastStep != stepAt(f.clock.Now()) || s.remaining != RecoveryCodeCount {
			t.Fatalf("state = %+v, want last_step %d and %d codes", s, stepAt(f.clock.Now()), RecoveryCodeCount)
		}
		// The confirming code's step is spent.
		if _, err := f.m.Verify(ctx, uid, GenerateCode(e.Secret, f.clock.Now())); !errors.Is(err, ErrReplayed) {
			t.Fatalf("Verify with the confirming code: err = %v, want ErrReplayed", err)
		}
	})

	rejected := []struct {
		name string
		code func(secret string) string
		want error
	}{
		{"wrong code", func(s string) string { return wrongCode(s, f.clock.Now()) }, ErrInvalidCode},
		{"two steps old", func(s string) string { return GenerateCode(s, f.clock.Now().Add(-2*step)) }, ErrInvalidCode},
		{"recovery-shaped", func(string) string { return "abcde-fghjk" }, ErrMalformedCode},
		{"letters", func(string) string { return "abcdef" }, ErrMalformedCode},
		{"empty", func(string) string { return "" }, ErrMalformedCode},
	}
	for _, tt := range rejected {
		t.Run(tt.name+" changes nothing", func(t *testing.T) {
			uid := f.user(t)
			e, err := f.m.Begin(ctx, uid, "test", "a@example.com")
			if err != nil {
				t.Fatal(err)
			}
			before := f.state(t, uid)
			if _, err := f.m.Confirm(ctx, uid, "test", tt.code(e.Secret)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			after := f.state(t, uid)
			if tt.want == ErrInvalidCode {
				before.failures++ // a wrong guess counts, and nothing else moves
			}
			if after != before {
				t.Fatalf("state %+v -> %+v", before, after)
			}
		})
	}

	t.Run("no pending secret", func(t *testing.T) {
		if _, err := f.m.Confirm(ctx, f.user(t), "test", "123456"); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("err = %v, want ErrNotEnrolled", err)
		}
	})
	t.Run("already confirmed", func(t *testing.T) {
		uid, secret, _ := f.enroll(t)
		if _, err := f.m.Confirm(ctx, uid, "test", GenerateCode(secret, f.clock.Now())); !errors.Is(err, ErrAlreadyEnrolled) {
			t.Fatalf("err = %v, want ErrAlreadyEnrolled", err)
		}
	})
}

func TestTOTP_Verify(t *testing.T) {
	ctx := context.Background()

	t.Run("skew", func(t *testing.T) {
		f := newFixture(t)
		tests := []struct {
			offset int
			want   error
		}{
			{-2, ErrInvalidCode},
			{-1, nil},
			{0, nil},
			{1, nil},
			{2, ErrInvalidCode},
		}
		for _, tt := range tests {
			uid, secret, _ := f.enroll(t)
			f.clock.Advance(5 * step)
			code := GenerateCode(secret, f.clock.Now().Add(time.Duration(tt.offset)*step))
			method, err := f.m.Verify(ctx, uid, code)
			if !errors.Is(err, tt.want) {
				t.Errorf("offset %+d steps: err = %v, want %v", tt.offset, err, tt.want)
			}
			if err == nil && method != MethodOTP {
				t.Errorf("offset %+d steps: method = %q, want %q", tt.offset, method, MethodOTP)
			}
		}
	})

	t.Run("step edges", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		// Last second of a step, then the first of the next: the code of the
		// step just ended is one step old, and still accepted.
		f.clock.Advance(14 * time.Second)
		code := GenerateCode(secret, f.clock.Now())
		f.clock.Advance(time.Second)
		if _, err := f.m.Verify(ctx, uid, code); err != nil {
			t.Fatalf("code from the previous second, across a step edge: %v", err)
		}
	})

	t.Run("normalised input", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		for _, format := range []func(string) string{
			func(c string) string { return c[:3] + " " + c[3:] },
			func(c string) string { return " " + c[:3] + "-" + c[3:] + "\n" },
		} {
			f.clock.Advance(step)
			in := format(GenerateCode(secret, f.clock.Now()))
			if _, err := f.m.Verify(ctx, uid, in); err != nil {
				t.Errorf("Verify(%q): %v", in, err)
			}
		}
	})

	t.Run("replay in the same step", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		code := GenerateCode(secret, f.clock.Now())
		if _, err := f.m.Verify(ctx, uid, code); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Second)
		if _, err := f.m.Verify(ctx, uid, code); !errors.Is(err, ErrReplayed) {
			t.Fatalf("second use: err = %v, want ErrReplayed", err)
		}
		if n := f.state(t, uid).failures; n != 1 {
			t.Fatalf("failures = %d, want 1 (a replay counts)", n)
		}
	})

	t.Run("older step after a newer one", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		now := f.clock.Now()
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, now.Add(step))); err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, now)); !errors.Is(err, ErrReplayed) {
			t.Fatalf("err = %v, want ErrReplayed", err)
		}
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, now.Add(-step))); !errors.Is(err, ErrReplayed) {
			t.Fatalf("err = %v, want ErrReplayed", err)
		}
	})

	t.Run("concurrent replay", func(t *testing.T) {
		f := newFixture(t)
		f.m.Limiter.Free = 1000 // every loser must be a replay, not throttled
		uid, secret, _ := f.enroll(t)
		code := GenerateCode(secret, f.clock.Now())
		errs := race(16, func() error {
			_, err := f.m.Verify(ctx, uid, code)
			return err
		})
		var ok int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrReplayed):
				t.Errorf("loser err = %v, want ErrReplayed", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 16 concurrent submissions succeeded, want exactly 1", ok)
		}
	})

	t.Run("parallel wrong guesses take turns", func(t *testing.T) {
		// Judged one at a time, each guess sees the failures before it:
		// the free ones and the first delayed one are checked, and every
		// other guess finds the delay set. Judged side by side, all of them
		// would pass the throttle before any failure was counted.
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		wrong := wrongCode(secret, f.clock.Now())
		errs := race(16, func() error {
			_, err := f.m.Verify(ctx, uid, wrong)
			return err
		})
		var checked int
		for _, err := range errs {
			var te *ThrottledError
			switch {
			case errors.Is(err, ErrInvalidCode):
				checked++
			case !errors.As(err, &te):
				t.Errorf("err = %v, want ErrInvalidCode or *ThrottledError", err)
			}
		}
		if want := f.m.Limiter.Free + 1; checked != want {
			t.Fatalf("%d of 16 parallel wrong codes were checked, want %d", checked, want)
		}
		if n := f.state(t, uid).failures; n != f.m.Limiter.Free+1 {
			t.Fatalf("failures = %d, want %d", n, f.m.Limiter.Free+1)
		}
	})

	t.Run("inside the caller's transaction", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		code := GenerateCode(secret, f.clock.Now())
		errUndo := errors.New("caller rolls back")
		err := db.Tx(ctx, f.pool, func(ctx context.Context) error {
			if _, err := f.m.Verify(ctx, uid, code); err != nil {
				return err
			}
			return errUndo
		})
		if !errors.Is(err, errUndo) {
			t.Fatalf("InTx err = %v, want the caller's", err)
		}
		// The caller rolled back, and the spent step with it.
		if _, err := f.m.Verify(ctx, uid, code); err != nil {
			t.Fatalf("code after the caller rolled back: %v", err)
		}
		// A failure commits with the caller.
		err = db.Tx(ctx, f.pool, func(ctx context.Context) error {
			_, err := f.m.Verify(ctx, uid, wrongCode(secret, f.clock.Now()))
			if !errors.Is(err, ErrInvalidCode) {
				t.Errorf("wrong code: err = %v, want ErrInvalidCode", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := f.state(t, uid).failures; n != 1 {
			t.Fatalf("failures = %d, want 1", n)
		}
	})

	t.Run("throttled after the free failures", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		for i := range f.m.Limiter.Free + 1 {
			if _, err := f.m.Verify(ctx, uid, wrongCode(secret, f.clock.Now())); !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("wrong code %d: err = %v, want ErrInvalidCode", i+1, err)
			}
		}
		_, err := f.m.Verify(ctx, uid, GenerateCode(secret, f.clock.Now()))
		var te *ThrottledError
		if !errors.As(err, &te) || te.RetryAfter <= 0 {
			t.Fatalf("right code while throttled: err = %v, want *ThrottledError", err)
		}
		before := f.state(t, uid)
		if before.failures != f.m.Limiter.Free+1 {
			t.Fatalf("failures = %d, want %d (a throttled attempt is not counted)", before.failures, f.m.Limiter.Free+1)
		}
		f.clock.Advance(te.RetryAfter)
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, f.clock.Now())); err != nil {
			t.Fatalf("right code after the delay: %v", err)
		}
		if n := f.state(t, uid).failures; n != 0 {
			t.Fatalf("failures after success = %d, want 0", n)
		}
	})

	t.Run("delays grow", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		var last time.Duration
		for i := range f.m.Limiter.Free + 4 {
			_, err := f.m.Verify(ctx, uid, wrongCode(secret, f.clock.Now()))
			var te *ThrottledError
			if errors.As(err, &te) {
				t.Fatalf("attempt %d throttled although the clock moved past the delay", i+1)
			}
			wait, err := f.m.Limiter.Wait(ctx, throttleKey(uid))
			if err != nil {
				t.Fatal(err)
			}
			if i >= f.m.Limiter.Free && wait <= last {
				t.Fatalf("after %d failures delay %v, not longer than %v", i+1, wait, last)
			}
			last = wait
			f.clock.Advance(wait)
		}
	})

	t.Run("malformed input changes nothing", func(t *testing.T) {
		f := newFixture(t)
		uid, _, _ := f.enroll(t)
		before := f.state(t, uid)
		for _, in := range []string{"", "   ", "abcdef", "12345", "1234567", "12345a", "!!!!!-!!!!!", "uuuuu-uuuuu", "abcde-fghjk-m", strings.Repeat("1", 1000)} {
			_, err := f.m.Verify(ctx, uid, in)
			if !errors.Is(err, ErrMalformedCode) {
				t.Errorf("Verify(%q): err = %v, want ErrMalformedCode", in, err)
				continue
			}
			if !strings.Contains(err.Error(), "6 digits") {
				t.Errorf("Verify(%q): message %q does not say what a code looks like", in, err)
			}
			if len(strings.TrimSpace(in)) >= 5 && strings.Contains(err.Error(), in) {
				t.Errorf("Verify(%q): message %q echoes the input", in, err)
			}
		}
		if after := f.state(t, uid); after != before {
			t.Fatalf("malformed input changed state: %+v -> %+v", before, after)
		}
	})

	t.Run("well-formed wrong recovery code", func(t *testing.T) {
		f := newFixture(t)
		uid, _, _ := f.enroll(t)
		before := f.state(t, uid)
		if _, err := f.m.Verify(ctx, uid, "zzzzz-zzzzz"); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("err = %v, want ErrInvalidCode", err)
		}
		before.failures++
		if after := f.state(t, uid); after != before {
			t.Fatalf("state %+v -> %+v; want only one more failure", before, after)
		}
	})

	t.Run("not enrolled", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.m.Verify(ctx, f.user(t), "123456"); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("err = %v, want ErrNotEnrolled", err)
		}
	})

	t.Run("secret sealed by an unknown key", func(t *testing.T) {
		f := newFixture(t)
		uid, secret, _ := f.enroll(t)
		other, err := secrets.New("another-server-secret-0123456789abcdef", "totp")
		if err != nil {
			t.Fatal(err)
		}
		f.m.Box = other
		_, err = f.m.Verify(ctx, uid, GenerateCode(secret, f.clock.Now()))
		if !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
}

// Verify is on the sign-in's hot path: it must cost two round trips (BEGIN
// with the locking read, the verdict with COMMIT) whatever the verdict, and
// a success after failures must forget them in those two.
func TestTOTP_VerifyRoundTrips(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	uid, secret, _ := f.enroll(t)
	m, trips := f.traced(t)
	steps := []struct {
		name         string
		code         func() string
		want         error
		wantFailures int
	}{
		{"right code", func() string { return GenerateCode(secret, f.clock.Now()) }, nil, 0},
		{"wrong code", func() string { return wrongCode(secret, f.clock.Now()) }, ErrInvalidCode, 1},
		{"replayed code", func() string { return GenerateCode(secret, f.clock.Now()) }, ErrReplayed, 2},
		{"right code after failures", func() string { return GenerateCode(secret, f.clock.Now().Add(step)) }, nil, 0},
	}
	for _, s := range steps {
		var err error
		n := trips.Count(func() { _, err = m.Verify(ctx, uid, s.code()) })
		if !errors.Is(err, s.want) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
		if n != 2 {
			t.Errorf("%s: %d round trips, want 2", s.name, n)
		}
		if got := f.state(t, uid).failures; got != s.wantFailures {
			t.Errorf("%s: failures = %d, want %d", s.name, got, s.wantFailures)
		}
	}
}

func TestTOTP_Disable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	t.Run("removes everything", func(t *testing.T) {
		uid, secret, codes := f.enroll(t)
		if err := f.m.Disable(ctx, uid); err != nil {
			t.Fatal(err)
		}
		var creds, recs int
		if err := f.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM totp_credentials WHERE user_id = $1),
			(SELECT count(*) FROM recovery_codes WHERE user_id = $1)`, uid).Scan(&creds, &recs); err != nil {
			t.Fatal(err)
		}
		if creds != 0 || recs != 0 {
			t.Fatalf("after Disable: %d credentials, %d recovery codes; want none", creds, recs)
		}
		if on, err := f.m.Enabled(ctx, uid); err != nil || on {
			t.Fatalf("Enabled = %v, %v; want false", on, err)
		}
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, f.clock.Now())); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("Verify TOTP after Disable: err = %v, want ErrNotEnrolled", err)
		}
		if _, err := f.m.Verify(ctx, uid, codes[0]); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("Verify recovery code after Disable: err = %v, want ErrNotEnrolled", err)
		}
		if err := f.m.Disable(ctx, uid); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("second Disable: err = %v, want ErrNotEnrolled", err)
		}
		if _, err := f.m.Begin(ctx, uid, "test", "a@example.com"); err != nil {
			t.Fatalf("Begin after Disable: %v", err)
		}
	})

	t.Run("pending enrollment", func(t *testing.T) {
		uid := f.user(t)
		if _, err := f.m.Begin(ctx, uid, "test", "a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Disable(ctx, uid); err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.Pending(ctx, uid, "test", "a@example.com"); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("Pending after Disable: err = %v, want ErrNotEnrolled", err)
		}
	})

	t.Run("other users untouched", func(t *testing.T) {
		a, _, _ := f.enroll(t)
		b, _, _ := f.enroll(t)
		before := f.state(t, b)
		if err := f.m.Disable(ctx, a); err != nil {
			t.Fatal(err)
		}
		if after := f.state(t, b); after != before {
			t.Fatalf("other user's state %+v -> %+v", before, after)
		}
	})
}

func TestTOTP_ReencryptAll(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	confirmed, secret, _ := f.enroll(t)
	pending := f.user(t)
	if _, err := f.m.Begin(ctx, pending, "test", "p@example.com"); err != nil {
		t.Fatal(err)
	}

	const newSecret = "rotated-server-secret-0123456789abcdef"
	rotated, err := secrets.New(newSecret+","+testSecret, "totp")
	if err != nil {
		t.Fatal(err)
	}
	f.m.Box = rotated

	t.Run("re-seals values under old keys", func(t *testing.T) {
		n, err := f.m.ReencryptAll(ctx)
		if err != nil || n != 2 {
			t.Fatalf("ReencryptAll = %d, %v; want 2, nil", n, err)
		}
		for _, uid := range []string{confirmed, pending} {
			var raw []byte
			if err := f.pool.QueryRow(ctx, `SELECT secret_encrypted FROM totp_credentials WHERE user_id = $1`, uid).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if rotated.NeedsRotation(raw) {
				t.Fatalf("user %s still sealed by the old key", uid)
			}
		}
	})
	t.Run("second run has nothing to do", func(t *testing.T) {
		if n, err := f.m.ReencryptAll(ctx); err != nil || n != 0 {
			t.Fatalf("ReencryptAll = %d, %v; want 0, nil", n, err)
		}
	})
	t.Run("old key can be dropped", func(t *testing.T) {
		onlyNew, err := secrets.New(newSecret, "totp")
		if err != nil {
			t.Fatal(err)
		}
		f.m.Box = onlyNew
		if _, err := f.m.Verify(ctx, confirmed, GenerateCode(secret, f.clock.Now())); err != nil {
			t.Fatalf("Verify with only the new key: %v", err)
		}
		if _, err := f.m.Pending(ctx, pending, "test", "p@example.com"); err != nil {
			t.Fatalf("Pending with only the new key: %v", err)
		}
	})
	t.Run("unreadable row is reported, others still rotate", func(t *testing.T) {
		f.m.Box = rotated
		uid := f.user(t)
		if _, err := f.m.Begin(ctx, uid, "test", "x@example.com"); err != nil {
			t.Fatal(err)
		}
		// uid's row is sealed by the old key and rotates; pending's is sealed
		// by the old key bound to another user, so no key opens it.
		if _, err := f.pool.Exec(ctx, `UPDATE totp_credentials SET secret_encrypted = $2 WHERE user_id = $1`,
			uid, mustSeal(t, testSecret, uid)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.pool.Exec(ctx, `UPDATE totp_credentials SET secret_encrypted = $2 WHERE user_id = $1`,
			pending, mustSeal(t, testSecret, confirmed)); err != nil {
			t.Fatal(err)
		}
		n, err := f.m.ReencryptAll(ctx)
		if n != 1 || !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), pending) {
			t.Fatalf("ReencryptAll = %d, %v; want 1 and an ErrDecrypt naming %s", n, err, pending)
		}
	})
}

func mustSeal(t *testing.T, serverSecret, userID string) []byte {
	t.Helper()
	box, err := secrets.New(serverSecret, "totp")
	if err != nil {
		t.Fatal(err)
	}
	return box.Seal([]byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), []byte(userID))
}

func BenchmarkTOTP_Verify(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	uid, secret, _ := f.enroll(b)
	for b.Loop() {
		f.clock.Advance(step) // each accepted code needs a fresh step
		if _, err := f.m.Verify(ctx, uid, GenerateCode(secret, f.clock.Now())); err != nil {
			b.Fatal(err)
		}
	}
}
