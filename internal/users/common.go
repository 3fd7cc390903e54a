package users

import (
	_ "embed"
	"strings"
	"sync"
	"unicode/utf8"
)

// commonPasswordsFile lists the most common passwords, one a line, most
// common first; its header says where the list comes from.
//
//go:embed common-passwords.txt
var commonPasswordsFile string

// commonPasswords is the set of listed passwords long enough to pass the
// length rule, in commonForm. The shorter ones are refused before the list
// is consulted, so keeping them would only cost memory (two thirds of the
// list). It is built on first use, when a password is chosen; sign-in never
// needs it.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 16384)
	for line := range strings.Lines(commonPasswordsFile) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The file is already in commonForm, so p is line itself and the
		// keys share the embedded text's memory.
		p := commonForm(normalize(line))
		if utf8.RuneCountInString(p) >= MinPasswordRunes {
			set[p] = struct{}{}
		}
	}
	return set
})

// commonForm is the form an NFKC-normalised password is looked up in:
// lower-cased, so "Password1" and "PASSWORD1" are both "password1".
// strings.ToLower maps rune for rune, so the length rule counts the same.
func commonForm(normalized string) string { return strings.ToLower(normalized) }

// isCommon reports whether an NFKC-normalised password is on the list.
func isCommon(normalized string) bool {
	_, ok := commonPasswords()[commonForm(normalized)]
	return ok
}
