package mfa

import (
	"fmt"
	"strings"
	"unicode"
)

// kind tells what a submitted code looks like.
type kind int

const (
	kindTOTP kind = iota + 1
	kindRecovery
)

// maxInput bounds what parseCode looks at: nothing valid is longer, and a
// megabyte of pasted text should not cost more than a short one.
const maxInput = 64

// errMalformedVerify explains what Verify accepts without echoing the input,
// which may be a mistyped secret.
var errMalformedVerify = fmt.Errorf("%w: enter the 6 digits your authenticator app shows, or one of your recovery codes (10 letters and digits, like %s)",
	ErrMalformedCode, "7k3qm-x9d2f")

// ErrMalformedAppCode is Confirm's ErrMalformedCode: it only takes a code
// from the app, as recovery codes do not exist yet.
var ErrMalformedAppCode = fmt.Errorf("%w: enter the 6 digits your authenticator app shows", ErrMalformedCode)

// parseCode normalises user input: spaces and dashes are dropped (apps show
// "123 456", recovery codes are printed "xxxxx-xxxxx"). Exactly 6 ASCII
// digits is a TOTP code; 10 characters of the recovery alphabet, in either
// case, is a recovery code, returned in its canonical form. Anything else is
// malformed.
func parseCode(input string) (kind, string, error) {
	if len(input) > maxInput {
		return 0, "", errMalformedVerify
	}
	var b strings.Builder
	for _, r := range input {
		if r == '-' || unicode.IsSpace(r) {
			continue
		}
		b.WriteRune(r)
	}
	s := b.String()
	if len(s) == totpDigits && allDigits(s) {
		return kindTOTP, s, nil
	}
	if c, ok := canonicalRecovery(s); ok {
		return kindRecovery, c, nil
	}
	return 0, "", errMalformedVerify
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalUserID returns id in PostgreSQL's text form of a uuid. The id is
// the AEAD's associated data and part of each recovery-code hash, so two
// spellings of one id must not disagree.
func canonicalUserID(op, id string) (string, error) {
	s := strings.ToLower(id)
	ok := len(s) == 36
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			ok = c == '-'
		default:
			ok = ('0' <= c && c <= '9') || ('a' <= c && c <= 'f')
		}
	}
	if !ok {
		return "", fmt.Errorf("mfa: %s: user id %q is not a UUID", op, id)
	}
	return s, nil
}
