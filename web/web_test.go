package web

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
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
	"error":          ErrorData{Message: "m", Hint: "h"},
	"login":          sample{"Client": "App", "Email": "a@example.com", "Error": "e"},
	"new-password":   sample{"Client": "App", "Error": "e", "Reset": true},
	"forgot":         sample{"Email": "a@example.com", "Error": "e", "Minutes": 30, "Off": false},
	"forgot-sent":    sample{"Email": "a@example.com", "Minutes": 30},
	"reset":          sample{"Token": "t", "SecondFactor": true},
	"alert-report":   sample{"Token": "t", "One": true},
	"alert-reported": sample{"One": false, "Ended": 2, "Continue": "/login/forgot"},
	"verify-email":   sample{"Token": "t", "Email": "a@example.com", "Change": true, "Done": false},
	"account-email":  sample{"Current": "a@example.com", "Email": "b@example.com", "Error": "e", "Sent": false, "Off": false},
	"signup":         sample{"Email": "a@example.com", "Name": "Ada", "Error": "e", "Domains": "example.com", "Sent": false},
	"signup-confirm": sample{"Email": "a@example.com", "Token": "t", "Done": false},
	"totp":           sample{"Client": "App", "Error": "e", "Remaining": 3},
	"enroll":         sample{"Secret": "ABC", "URI": "otpauth://totp/x", "Error": "", "QRURL": "/qr.png", "Action": "/enroll"},
	"recovery":       sample{"RecoveryCodes": []string{"abcde-fghij"}, "Continue": "/next"},
	"logout":         sample{"Client": "App", "RedirectURI": "https://app/", "State": "s", "ClientID": "app", "Done": false},
	"account": sample{"User": sample{"Email": "a@example.com", "Name": "Ada"},
		"MFA":    sample{"Enabled": true, "Remaining": 2, "Total": 10, "Low": true, "Required": false},
		"Notice": "n", "Error": "e", "RecoveryError": "r", "DisableError": "d",
		"Sessions": []sample{{"ID": "sid", "Device": "Firefox on Linux", "UserAgent": "Mozilla/5.0", "IP": "192.0.2.1",
			"Started": "1 Jan 2030, 10:00 UTC", "StartedISO": "2030-01-01T10:00:00Z", "LastSeen": "just now",
			"LastSeenISO": "2030-01-01T10:00:00Z", "Current": true, "MultiFactor": true,
			"Apps": []sample{{"ID": "app", "Name": "App"}}}}},
	"account-enroll":              sample{"Secret": "ABC", "URI": "otpauth://totp/x", "Error": "e"},
	"account-signed-out":          sample{"Everywhere": true, "Ended": sample{"Sessions": "2 sessions", "Apps": "1 app"}},
	"account-sign-out-everywhere": sample{"Sessions": "2 sessions", "Apps": "1 app"},
	"consent": sample{"Client": "App", "Scopes": []sample{{"Name": "email", "Text": "See your email address"}},
		"Fields": [][2]string{{"client_id", "app"}}},
	"device": sample{"Step": "confirm", "UserCode": "BCDF-GHJK", "Problem": "p", "Client": "TV app",
		"Scopes": []sample{{"Name": "email", "Text": "See your email address"}}, "Approved": true},
	"admin": sample{"Email": "ada", "Error": "No user has the email address ada.", "Heading": "Emails containing “ada”",
		"NeedCode": true, "New": sample{"Email": "", "Name": "", "Admin": true},
		"Users": []sample{{"ID": "u1", "Email": "ada@example.com", "Name": "Ada", "Admin": true, "Disabled": false,
			"Created": "1 Jan 2030, 10:00 UTC", "CreatedISO": "2030-01-01T10:00:00Z"}}},
	"admin-clients": sample{"Notice": "n", "Error": "e", "NeedCode": true,
		"Clients": []sample{{"ID": "svc", "Name": "Offboarding", "Kind": "confidential", "Grants": "client_credentials",
			"ServiceAccount": true, "Eligible": true}}},
	"admin-signals": sample{"Notice": "n", "Error": "e",
		"Streams": []sample{
			{"ID": "s1", "ClientID": "siem", "Delivery": "push to https://siem/events", "Status": "enabled", "Reason": "",
				"LastError": "HTTP 503", "Backlog": 2, "Held": 0, "Failed": 1},
			{"ID": "s2", "ClientID": "mdm", "Delivery": "poll", "Status": "paused", "Reason": "maintenance",
				"LastError": "", "Backlog": 3, "Held": 3, "Failed": 0}}},
	"admin-user": sample{
		"User":    sample{"ID": "u1", "Email": "ada@example.com", "Name": "Ada", "IsAdmin": false, "RequireMFA": true},
		"Created": "1 Jan 2030, 10:00 UTC", "DisabledAt": "", "MFA": "on", "Self": false, "Notice": "n", "Error": "e",
		"NeedCode": true,
		"Live":     1, "WindowDays": 7, "Unconfirmed": 1,
		"Sessions": []sample{{"SID": "sid", "UserAgent": "Mozilla/5.0", "Device": "Firefox on Linux", "IP": "192.0.2.1",
			"Started": "1 Jan 2030, 10:00 UTC", "StartedISO": "2030-01-01T10:00:00Z", "LastSeen": "just now",
			"LastSeenISO": "2030-01-01T10:00:00Z", "Ended": "just now", "EndedISO": "2030-01-01T10:00:00Z",
			"Why": "revoked by an administrator", "MultiFactor": true,
			"Apps": []sample{
				{"ClientID": "app-a", "Name": "App A", "SignedIn": "1 Jan 2030, 10:00 UTC", "BackchannelLogout": true,
					"Notifications": []sample{{"ID": 7, "State": "failed", "Reason": "revoked", "Attempts": 3,
						"LastError": "HTTP 500", "When": "refused just now", "WhenISO": "2030-01-01T10:00:00Z", "Retry": true}}},
				{"ClientID": "app-b", "Name": "", "SignedIn": "", "BackchannelLogout": false, "Notifications": []sample{}},
			}}}},
}

func TestBrand_Validate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		brand Brand
		ok    bool
	}{
		{"empty", Brand{}, true},
		{"short hex", Brand{Color: "#2Ad"}, true},
		{"long hex", Brand{Color: "#2458d6"}, true},
		{"named colour", Brand{Color: "red"}, false},
		{"no hash", Brand{Color: "2458d6"}, false},
		{"four digits", Brand{Color: "#2458"}, false},
		{"css injection", Brand{Color: "#fff; } body { display: none"}, false},
		{"rgb function", Brand{Color: "rgb(1,2,3)"}, false},
		{"https logo", Brand{LogoURL: "https://cdn.example.com/logo.svg"}, true},
		{"static logo", Brand{LogoURL: "/static/style.css"}, true},
		{"missing static file", Brand{LogoURL: "/static/nope.png"}, false},
		{"http logo", Brand{LogoURL: "http://cdn.example.com/logo.png"}, false},
		{"javascript logo", Brand{LogoURL: "javascript:alert(1)"}, false},
		{"data logo", Brand{LogoURL: "data:image/png;base64,AAAA"}, false},
		{"path outside static", Brand{LogoURL: "/account"}, false},
		{"dot-dot", Brand{LogoURL: "/static/../account"}, false},
		{"scheme-relative", Brand{LogoURL: "//evil.example/logo.png"}, false},
		{"credentials", Brand{LogoURL: "https://user:pw@cdn.example.com/logo.png"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.brand.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tc.brand, err, tc.ok)
			}
			_, perr := Parse(tc.brand, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if (perr == nil) != tc.ok {
				t.Fatalf("Parse(%+v) = %v, want ok=%v", tc.brand, perr, tc.ok)
			}
		})
	}
}

// TestTemplates_BrandStylesheet checks the generated stylesheet: linked
// from every page, the operator's colour in it, and text colours derived
// so both text on the colour and the colour as text on white stay readable.
func TestTemplates_BrandStylesheet(t *testing.T) {
	for _, tc := range []struct {
		color, wantFG string
	}{
		{"#2458D6", "#ffffff"}, // dark blue: white text
		{"#fd0", "#111418"},    // yellow: dark text
		{"#ffffff", "#111418"},
		{"#000", "#ffffff"},
	} {
		t.Run(tc.color, func(t *testing.T) {
			tpl, err := Parse(Brand{Name: "Acme", Color: tc.color}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			page := httptest.NewRecorder()
			tpl.Render(page, 200, "error", "Error", "", ErrorData{Message: "m"})
			href := regexp.MustCompile(`<link rel="stylesheet" href="(/static/brand\.css\?v=[0-9a-f]+)">`).FindStringSubmatch(page.Body.String())
			if href == nil {
				t.Fatalf("the page does not link the brand stylesheet:\n%s", page.Body)
			}
			w := httptest.NewRecorder()
			tpl.BrandCSS().ServeHTTP(w, httptest.NewRequest("GET", href[1], nil))
			css := w.Body.String()
			if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
				t.Fatalf("GET %s: %d %s", href[1], w.Code, w.Header().Get("Content-Type"))
			}
			if !strings.Contains(css, "--brand: "+strings.ToLower(tc.color)+";") || !strings.Contains(css, "--brand-fg: "+tc.wantFG+";") {
				t.Fatalf("stylesheet for %s lacks the colour or has the wrong text colour (want %s):\n%s", tc.color, tc.wantFG, css)
			}
			ink := regexp.MustCompile(`--brand-ink: (#[0-9a-f]{6});`).FindStringSubmatch(css)
			if ink == nil {
				t.Fatalf("no --brand-ink:\n%s", css)
			}
			if c := contrast(luminance(parseHex(ink[1])), 1); c < 4.5 {
				t.Errorf("--brand-ink %s on white has contrast %.2f, want at least 4.5", ink[1], c)
			}
			if fg := parseHex(tc.wantFG); contrast(luminance(fg), luminance(parseHex(tc.color))) < 4.5 {
				t.Errorf("text %s on %s has contrast below 4.5", tc.wantFG, tc.color)
			}
		})
	}
}

// TestTemplates_LogoOrigin checks that a logo elsewhere is allowed by the
// pages' Content-Security-Policy, and only its origin.
func TestTemplates_LogoOrigin(t *testing.T) {
	tpl, err := Parse(Brand{Name: "Acme", LogoURL: "https://cdn.example.com/a/logo.svg"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	tpl.Render(w, 200, "error", "Error", "", ErrorData{Message: "m"})
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' data: https://cdn.example.com;") {
		t.Errorf("CSP %q does not allow the logo's origin", csp)
	}
	if !strings.Contains(w.Body.String(), `<img src="https://cdn.example.com/a/logo.svg"`) {
		t.Errorf("the page does not show the logo:\n%s", w.Body)
	}
}

// TestTemplates_Nav: every page links to the account page and to signing
// out, but those shown without a session; and every page names the
// favicon.
func TestTemplates_Nav(t *testing.T) {
	tpl, err := Parse(Brand{Name: "Acme"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range tpl.Names() {
		w := httptest.NewRecorder()
		tpl.Render(w, 200, name, "Title", "csrf-value", samples[name])
		body := w.Body.String()
		hasNav := strings.Contains(body, `<a href="/oauth2/sessions/logout">Sign out</a>`) && strings.Contains(body, `<a href="/account">`)
		if hasNav == sessionlessPages[name] {
			t.Errorf("%s: sign-out and account links shown = %v, want %v", name, hasNav, !sessionlessPages[name])
		}
		if !strings.Contains(body, `rel="icon" href="/static/favicon.svg"`) {
			t.Errorf("%s: no favicon", name)
		}
	}
}

// TestTemplates_FormAction: a page's forms may lead only to this server,
// and to the origins of the URLs it is rendered with (an app's redirect
// URIs); nothing else a target holds reaches the policy.
func TestTemplates_FormAction(t *testing.T) {
	tpl, err := Parse(Brand{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	formAction := func(targets ...string) string {
		w := httptest.NewRecorder()
		tpl.Render(w, 200, "error", "Error", "", ErrorData{Message: "m"}, targets...)
		for _, d := range strings.Split(w.Header().Get("Content-Security-Policy"), ";") {
			if d = strings.TrimSpace(d); strings.HasPrefix(d, "form-action ") {
				return d
			}
		}
		t.Fatalf("no form-action in %q", w.Header().Get("Content-Security-Policy"))
		return ""
	}
	for _, tc := range []struct {
		name    string
		targets []string
		want    string
	}{
		{"no targets", nil, "form-action 'self'"},
		{"an app's redirect URIs", []string{"https://app.example.com/cb", "https://app.example.com/other", "http://127.0.0.1:9001/callback"},
			"form-action 'self' https://app.example.com http://127.0.0.1:9001"},
		{"an IPv6 literal", []string{"http://[::1]:8000/cb"}, "form-action 'self' http:"},
		{"nothing else", []string{"javascript:alert(1)", "https://evil.example.com;script-src *", "/local", "https://a.example.com:x/"},
			"form-action 'self'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formAction(tc.targets...); got != tc.want {
				t.Errorf("%s, want %s", got, tc.want)
			}
		})
	}
	w := httptest.NewRecorder()
	NoStore(w)
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self';") {
		t.Errorf("NoStore's policy %q lets forms go elsewhere", csp)
	}
}
