package sso

import (
	"strings"
	"testing"
)

func TestUserCode(t *testing.T) {
	t.Run("drawn", func(t *testing.T) {
		seen := map[string]bool{}
		for range 2000 {
			c := newUserCode()
			if len(c) != userCodeLen || strings.Trim(c, userCodeAlphabet) != "" {
				t.Fatalf("user code %q is not %d letters of %s", c, userCodeLen, userCodeAlphabet)
			}
			if normalizeUserCode(displayUserCode(c)) != c {
				t.Fatalf("%q does not read back from %q", c, displayUserCode(c))
			}
			seen[c] = true
		}
		if len(seen) < 1990 {
			t.Fatalf("only %d distinct codes of 2000", len(seen))
		}
	})
	cases := []struct{ typed, want string }{
		{"BCDF-GHJK", "BCDFGHJK"},
		{"bcdf ghjk", "BCDFGHJK"},
		{" BCDFGHJK\t", "BCDFGHJK"},
		{"BCDF-GHJ", ""},   // short
		{"BCDF-GHJKL", ""}, // long
		{"BCDF-GHJ0", ""},  // a digit
		{"BCDF-GHJA", ""},  // a vowel
		{"BCDF_GHJK", ""},  // another separator
		{"ＢCDF-GHJK", ""},  // a full-width letter
		{strings.Repeat("-", 100) + "BCDFGHJK", ""},
	}
	for _, tc := range cases {
		if got := normalizeUserCode(tc.typed); got != tc.want {
			t.Errorf("normalizeUserCode(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
}
