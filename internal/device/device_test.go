package device

import "testing"

func TestName(t *testing.T) {
	cases := []struct {
		name, ua, want string
	}{
		{"empty", "", "Unknown device"},
		{"firefox on linux", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"},
		{"chrome on windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on Windows"},
		{"edge claims chrome too", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68", "Edge on Windows"},
		{"safari on macos", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"},
		{"safari on iphone says mac os x too", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"},
		{"chrome on ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "Chrome on iPhone"},
		{"android says linux too", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"unknown browser on a known system", "Mozilla/5.0 (X11; Linux x86_64) Whatever", "Browser on Linux"},
		{"command-line client", "curl/8.5.0", "curl"},
		{"go client", "Go-http-client/1.1", "Go-http-client"},
		{"long product token", "AVeryLongProductNameThatNobodyCouldReadAtAGlance/1.0", "AVeryLongProductNameThatNobodyC…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Name(tc.ua); got != tc.want {
				t.Errorf("Name(%q) = %q, want %q", tc.ua, got, tc.want)
			}
		})
	}
}
