package pages_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/users"
)

func TestAgo(t *testing.T) {
	now := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"seconds", 40 * time.Second, "just now"},
		{"one minute", 90 * time.Second, "1 minute ago"},
		{"minutes", 59 * time.Minute, "59 minutes ago"},
		{"hours", 5 * time.Hour, "5 hours ago"},
		{"days show the date", 36 * time.Hour, "on 1 Jan 2030, 00:00 UTC"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := pages.Ago(now, now.Add(-tc.d)); got != tc.want {
				t.Errorf("Ago(-%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500 * time.Millisecond:  "1 second",
		1500 * time.Millisecond: "2 seconds",
		59 * time.Second:        "59 seconds",
		61 * time.Second:        "2 minutes",
		5 * time.Minute:         "5 minutes",
	} {
		if got := pages.Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestExplain: each domain error reads one way, with one status, wherever
// a page shows it; errors that are ours are not explained.
func TestExplain(t *testing.T) {
	cases := []struct {
		err    error
		status int
		want   string
	}{
		{&users.ThrottledError{RetryAfter: 90 * time.Second}, http.StatusTooManyRequests, "Too many failed attempts. Wait 2 minutes, then try again."},
		{&mfa.ThrottledError{RetryAfter: 4 * time.Second}, http.StatusTooManyRequests, "Too many wrong codes. Wait 4 seconds, then try again."},
		{fmt.Errorf("users: sign in: %w", users.ErrInvalidCredentials), http.StatusUnauthorized, "The email or password is not right. Check them and try again."},
		{users.ErrInvalidName, http.StatusBadRequest, fmt.Sprintf("The name must be at most %d characters, without control characters.", users.MaxNameRunes)},
		{fmt.Errorf("%w: x@", users.ErrInvalidEmail), http.StatusBadRequest, "That is not an email address."},
		{users.ErrEmailTaken, http.StatusConflict, "An account with that email exists already."},
		{&users.PolicyError{Reason: "must be at least 8 characters"}, http.StatusBadRequest, "The new password must be at least 8 characters."},
		{fmt.Errorf("mfa: confirm: %w", mfa.ErrMalformedAppCode), http.StatusBadRequest, "Enter the 6 digits your authenticator app shows."},
		{mfa.ErrMalformedCode, http.StatusBadRequest, "Enter the 6-digit code from your authenticator app, or one of your recovery codes (like abcde-fghij)."},
		{mfa.ErrInvalidCode, http.StatusUnauthorized, "That code is not right. Check that your phone's clock is set automatically and enter the current code."},
	}
	for _, tc := range cases {
		p, ok := pages.Explain(tc.err)
		if !ok || p.Status != tc.status || p.Message != tc.want {
			t.Errorf("Explain(%v) = %d %q, %v; want %d %q", tc.err, p.Status, p.Message, ok, tc.status, tc.want)
		}
	}
	if p, ok := pages.Explain(errors.New("db: connection refused")); ok {
		t.Errorf("an internal error was explained as %+v", p)
	}
	if _, ok := pages.Explain(&users.ThrottledError{RetryAfter: time.Second}); !ok {
		t.Error("throttle not explained")
	}
}
