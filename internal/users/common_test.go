package users_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/idp/idp/internal/users"
)

// listed returns the passwords in common-passwords.txt, most common first.
func listed(t *testing.T) []string {
	t.Helper()
	var list []string
	for line := range strings.Lines(users.CommonPasswordsFile) {
		line = strings.TrimSuffix(line, "\n")
		if line != "" && !strings.HasPrefix(line, "#") {
			list = append(list, line)
		}
	}
	return list
}

func TestCommonPasswordsFile(t *testing.T) {
	list := listed(t)

	t.Run("at least the top 10,000", func(t *testing.T) {
		if len(list) < 10000 {
			t.Fatalf("%d passwords listed, want at least 10000", len(list))
		}
	})

	// ASVS 6.2.4 counts the passwords the rest of the policy would accept.
	t.Run("at least 3,000 long enough to matter", func(t *testing.T) {
		n := 0
		for _, p := range list {
			if utf8.RuneCountInString(p) >= users.MinPasswordRunes {
				n++
			}
		}
		if n < 3000 {
			t.Fatalf("%d listed passwords have at least %d characters, want at least 3000", n, users.MinPasswordRunes)
		}
	})

	// The set is looked up by the NFKC, lower-cased form; an entry in any
	// other form would never match.
	t.Run("entries are normalised, lower-case and unique", func(t *testing.T) {
		seen := make(map[string]int, len(list))
		for i, p := range list {
			if want := strings.ToLower(norm.NFKC.String(p)); p != want {
				t.Errorf("entry %d %q is not in the looked-up form %q", i+1, p, want)
			}
			if strings.TrimSpace(p) != p || !utf8.ValidString(p) {
				t.Errorf("entry %d %q has surrounding space or invalid UTF-8", i+1, p)
			}
			if j, dup := seen[p]; dup {
				t.Errorf("entry %d %q repeats entry %d", i+1, p, j+1)
			}
			seen[p] = i
		}
	})

	t.Run("every entry long enough is refused", func(t *testing.T) {
		for _, p := range list {
			if utf8.RuneCountInString(p) < users.MinPasswordRunes || len(p) > users.MaxPasswordBytes {
				continue
			}
			if err := users.CheckPolicy(p); !errors.Is(err, users.ErrWeakPassword) || !strings.Contains(err.Error(), "common") {
				t.Errorf("CheckPolicy(%q) = %v, want ErrWeakPassword as a common password", p, err)
			}
		}
	})
}

func TestCheckPolicy_Common(t *testing.T) {
	refused := []struct{ name, password string }{
		{"listed", "password1"},
		{"listed, capitalised", "Password1"},
		{"listed, upper case", "PASSWORD1"},
		{"listed, mixed case", "TrUsTnO1"},
		{"a name", "Jennifer"},
		{"keyboard row", "QWERTYUIOP"},
		{"digits", "12345678"},
		{"rarer entry", "iloveyou1"},
		// NFKC folds fullwidth letters and digits to ASCII.
		{"fullwidth", "ｓｕｎｓｈｉｎｅ"},
	}
	for _, tc := range refused {
		t.Run(tc.name+" refused", func(t *testing.T) {
			err := users.CheckPolicy(tc.password)
			if !errors.Is(err, users.ErrWeakPassword) {
				t.Fatalf("CheckPolicy(%q) = %v, want ErrWeakPassword", tc.password, err)
			}
			if !strings.Contains(err.Error(), "most common passwords") {
				t.Fatalf("CheckPolicy(%q) = %q, want the common-password reason", tc.password, err)
			}
			if msg := strings.ToLower(err.Error()); strings.Contains(msg, strings.ToLower(tc.password)) ||
				strings.Contains(msg, strings.ToLower(norm.NFKC.String(tc.password))) {
				t.Fatalf("error %q repeats the password", err)
			}
		})
	}

	t.Run("composed and decomposed", func(t *testing.T) {
		for _, p := range listed(t) {
			if utf8.RuneCountInString(p) < users.MinPasswordRunes || norm.NFD.String(p) == p {
				continue
			}
			if err := users.CheckPolicy(norm.NFD.String(p)); !errors.Is(err, users.ErrWeakPassword) {
				t.Fatalf("CheckPolicy(NFD %q) = %v, want ErrWeakPassword", p, err)
			}
			return
		}
		t.Skip("no listed password of 8 or more characters changes under NFD (the list is ASCII)")
	})

	accepted := []struct{ name, password string }{
		{"random passphrase", "violet-anvil-glacier-47-tundra"},
		{"listed password inside a longer one", "password1 is what they all use"},
		{"unlisted 8 characters", "zq8-vk3m"},
	}
	for _, tc := range accepted {
		t.Run(tc.name+" accepted", func(t *testing.T) {
			if err := users.CheckPolicy(tc.password); err != nil {
				t.Fatalf("CheckPolicy(%q) = %v, want nil", tc.password, err)
			}
		})
	}
}
