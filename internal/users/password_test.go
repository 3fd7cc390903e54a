package users_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/idp/idp/internal/users"
)

// phc encodes an argon2id hash by hand, independently of the package, with
// the given memory (KiB) and passes.
func phc(password string, memory, passes uint32) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, passes, memory, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=1$%s$%s", memory, passes, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func TestHashPassword(t *testing.T) {
	ctx := context.Background()
	h, err := users.HashPassword(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("PHC format with OWASP parameters", func(t *testing.T) {
		re := regexp.MustCompile(`^\$argon2id\$v=19\$m=12288,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
		if !re.MatchString(h) {
			t.Fatalf("hash %q does not match %s", h, re)
		}
	})
	t.Run("fresh salt each time", func(t *testing.T) {
		h2, _ := users.HashPassword(ctx, "correct horse")
		if h2 == h {
			t.Fatal("two hashes of one password are equal")
		}
	})

	tests := []struct {
		name, hash, password string
		want                 bool
		wantErr              error
	}{
		{"right", h, "correct horse", true, nil},
		{"wrong", h, "correct horsE", false, nil},
		{"empty", h, "", false, nil},
		{"parameters read from the hash", phc("pw-with-old-params", 8192, 1), "pw-with-old-params", true, nil},
		{"other parameters, wrong password", phc("pw-with-old-params", 8192, 1), "nope", false, nil},
		// U+FB01 (ﬁ ligature) and "fi" are one password after NFKC.
		{"normalised", phc("file-cabinet", 8192, 1), "\ufb01le-cabinet", true, nil},
		{"not argon2id", "$2a$10$abcdefghijklmnopqrstuv", "x", false, users.ErrMalformedHash},
		{"bad version", "$argon2id$v=16$m=8192,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", "x", false, users.ErrMalformedHash},
		{"huge memory refused", "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", "x", false, users.ErrMalformedHash},
		{"empty", "", "x", false, users.ErrMalformedHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := users.CheckPassword(ctx, tc.hash, tc.password)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("CheckPassword = %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}

	t.Run("ended context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := users.HashPassword(ctx, "correct horse"); !errors.Is(err, context.Canceled) {
			t.Fatalf("HashPassword err = %v, want context.Canceled", err)
		}
		if _, err := users.CheckPassword(ctx, h, "correct horse"); !errors.Is(err, context.Canceled) {
			t.Fatalf("CheckPassword err = %v, want context.Canceled", err)
		}
	})
}

// BenchmarkHashPassword measures hashes per second at DefaultParams: the
// ceiling on password sign-ins one instance can serve. The parallel case
// shows the effect of the semaphore (at most NumCPU at once).
func BenchmarkHashPassword(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := users.HashPassword(ctx, "correct horse battery staple"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := users.HashPassword(ctx, "correct horse battery staple"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
