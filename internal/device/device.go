// Package device names the device a request came from, from its
// User-Agent, in words a person recognises ("Firefox on Linux"): for the
// list of one's sessions, and the default name of a new passkey.
package device

import (
	"strings"
	"unicode/utf8"
)

// Name shortens a User-Agent to what a person recognises: the
// browser and the system ("Firefox on Linux"). Browsers all claim to be
// Mozilla, Safari and often Chrome at once, so the order of the checks
// matters: the most specific token wins. Anything else shows its first
// product token ("curl", "Go-http-client"), cut to a readable length.
func Name(ua string) string {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return "Unknown device"
	}
	browser := firstMatch(ua, []match{
		{"Edg/", "Edge"}, {"EdgA/", "Edge"}, {"EdgiOS/", "Edge"},
		{"OPR/", "Opera"}, {"Opera", "Opera"}, {"SamsungBrowser/", "Samsung Internet"},
		{"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
		{"CriOS/", "Chrome"}, {"Chrome/", "Chrome"}, {"Chromium/", "Chromium"},
		{"Version/", "Safari"}, // Safari's own version token; Chrome-based browsers matched above
	})
	system := firstMatch(ua, []match{
		{"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"},
		{"Windows", "Windows"}, {"CrOS", "ChromeOS"}, {"Macintosh", "macOS"}, {"Mac OS X", "macOS"},
		{"Linux", "Linux"},
	})
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "" && strings.HasPrefix(ua, "Mozilla/"):
		return "Browser on " + system
	}
	product, _, _ := strings.Cut(ua, " ")
	product, _, _ = strings.Cut(product, "/")
	return shorten(product, 32)
}

type match struct{ token, name string }

func firstMatch(ua string, ms []match) string {
	for _, m := range ms {
		if strings.Contains(ua, m.token) {
			return m.name
		}
	}
	return ""
}

// shorten cuts s to at most n characters, marking the cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
