package servertest

import (
	"regexp"
	"strings"
	"testing"
)

// WantPage fails t unless p is at path with status and its body says want.
func WantPage(t testing.TB, p Page, path string, status int, want string) {
	t.Helper()
	if p.URL.Path != path || p.Status != status {
		t.Fatalf("got %s (%d), want %s (%d):\n%s", p.URL.Path, p.Status, path, status, p.Body)
	}
	if !strings.Contains(p.Body, want) {
		t.Fatalf("page %s lacks %q:\n%s", p.URL.Path, want, p.Body)
	}
}

var (
	inputRe = regexp.MustCompile(`<input[^>]*>`)
	attrRe  = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
	formRe  = regexp.MustCompile(`(?s)<form[^>]*>.*?</form>`)
)

// CheckMarkup checks what password managers, phones and screen readers
// rely on: every visible input has a label, code inputs ask for one-time
// codes with a numeric keypad, password inputs for the current password
// (or, named new_password or confirm_password, for a new one);
// and every form that changes something posts with a CSRF token (a GET
// form, such as a search, changes nothing).
func CheckMarkup(t testing.TB, body string) {
	t.Helper()
	for _, in := range inputRe.FindAllString(body, -1) {
		attrs := map[string]string{}
		for _, m := range attrRe.FindAllStringSubmatch(in, -1) {
			attrs[m[1]] = m[2]
		}
		if attrs["type"] == "hidden" {
			continue
		}
		if attrs["id"] == "" || !strings.Contains(body, `<label for="`+attrs["id"]+`"`) {
			t.Errorf("input without a label: %s", in)
		}
		switch {
		case attrs["name"] == "code" && (attrs["autocomplete"] != "one-time-code" || attrs["inputmode"] != "numeric"):
			t.Errorf("code input without one-time-code/numeric: %s", in)
		case attrs["type"] == "password" && (attrs["name"] == "new_password" || attrs["name"] == "confirm_password"):
			if attrs["autocomplete"] != "new-password" {
				t.Errorf("new password input without new-password: %s", in)
			}
		case attrs["type"] == "password" && attrs["autocomplete"] != "current-password":
			t.Errorf("password input without current-password: %s", in)
		}
	}
	for _, f := range formRe.FindAllString(body, -1) {
		if strings.HasPrefix(f, `<form method="get"`) {
			continue
		}
		if !strings.HasPrefix(f, `<form method="post"`) || !strings.Contains(f, `name="csrf_token" value="`) ||
			strings.Contains(f, `name="csrf_token" value=""`) {
			t.Errorf("form without method post and a CSRF token: %s", f)
		}
	}
}
