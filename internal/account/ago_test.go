package account

import (
	"testing"
	"time"
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
		{"days show the date", 36 * time.Hour, "1 Jan 2030, 00:00 UTC"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ago(now, now.Add(-tc.d)); got != tc.want {
				t.Errorf("ago(-%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}
