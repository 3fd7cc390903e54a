package web

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTemplates_RenderEach parses every page and renders it with the data
// its handler passes, so a template error shows here and not in production.
// Pages are rendered from a map of sample data keyed by page name; a page
// without sample data fails the test, so new pages get one.
func TestTemplates_RenderEach(t *testing.T) {
	tpl, err := Parse(Brand{Name: "Acme"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range tpl.Names() {
		t.Run(name, func(t *testing.T) {
			data, ok := samples[name]
			if !ok {
				t.Fatalf("no sample data for page %q: add one to samples", name)
			}
			w := httptest.NewRecorder()
			tpl.Render(w, 200, name, "Title", "csrf-value", data)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			body := w.Body.String()
			if !strings.Contains(body, "Acme") || !strings.Contains(body, "</html>") {
				t.Fatalf("page is not complete:\n%s", body)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Fatal("no Cache-Control: no-store")
			}
		})
	}
}

type sample map[string]any

var samples = map[string]any{
	"error":    ErrorData{Message: "m", Hint: "h"},
	"login":    sample{"Client": "App", "Email": "a@example.com", "Error": "e"},
	"totp":     sample{"Client": "App", "Error": "e", "Remaining": 3},
	"enroll":   sample{"Secret": "ABC", "URI": "otpauth://totp/x", "Error": "", "QRURL": "/qr.png", "Action": "/enroll"},
	"recovery": sample{"RecoveryCodes": []string{"abcde-fghij"}, "Continue": "/next"},
	"logout":   sample{"Client": "App", "RedirectURI": "https://app/", "State": "s", "ClientID": "app", "Done": false},
	"account": sample{"User": sample{"Email": "a@example.com", "Name": "Ada"},
		"MFA":    sample{"Enabled": true, "Remaining": 2, "Total": 10, "Low": true, "Required": false},
		"Notice": "n", "Error": "e", "RecoveryError": "r", "DisableError": "d",
		"Sessions": []sample{{"ID": "sid", "Device": "Firefox on Linux", "UserAgent": "Mozilla/5.0", "IP": "192.0.2.1",
			"Started": "1 Jan 2030, 10:00 UTC", "StartedISO": "2030-01-01T10:00:00Z", "LastSeen": "just now",
			"LastSeenISO": "2030-01-01T10:00:00Z", "Current": true, "MultiFactor": true,
			"Apps": []sample{{"ID": "app", "Name": "App"}}}}},
	"account-enroll":     sample{"Secret": "ABC", "URI": "otpauth://totp/x", "Error": "e"},
	"account-signed-out": sample{"Everywhere": true},
}
