package mail_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/mail"
)

func resetAction() mail.Action {
	return mail.Action{Kind: mail.KindPasswordReset, To: "ann@example.com", Name: "Ann <b>",
		Issuer: "https://login.example.com", Path: "/login/reset", Token: "tok-123", Expires: 30 * time.Minute}
}

func TestRender(t *testing.T) {
	m, err := mail.Render(mail.Brand{Name: "Acme Login", Color: "#AA3300"}, resetAction())
	if err != nil {
		t.Fatal(err)
	}
	want := "https://login.example.com/login/reset?token=tok-123"
	if m.Link != want {
		t.Fatalf("link %q, want %q", m.Link, want)
	}
	if m.To != "ann@example.com" || !strings.Contains(m.Subject, "Acme Login") {
		t.Fatalf("to %q subject %q", m.To, m.Subject)
	}
	links := regexp.MustCompile(`https?://[^\s<>"]+`)
	for part, body := range map[string]string{"text": m.Text, "html": m.HTML} {
		seen := map[string]bool{}
		for _, l := range links.FindAllString(body, -1) {
			seen[l] = true
		}
		if len(seen) != 1 || !seen[want] {
			t.Errorf("%s part: links %v, want only %s", part, seen, want)
		}
		if !strings.Contains(body, "Acme Login") || !strings.Contains(body, "30 minutes") {
			t.Errorf("%s part lacks the brand or the expiry:\n%s", part, body)
		}
	}
	if strings.Contains(strings.ToLower(m.HTML), "<img") || strings.Contains(m.HTML, "url(") {
		t.Errorf("HTML loads something (a tracking pixel?):\n%s", m.HTML)
	}
	if !strings.Contains(m.HTML, "#aa3300") {
		t.Errorf("HTML lacks the brand colour")
	}
	if strings.Contains(m.HTML, "Ann <b>") || !strings.Contains(m.HTML, "Ann &lt;b&gt;") {
		t.Errorf("the name is not escaped in HTML")
	}
	if !strings.Contains(m.Text, "Hello Ann <b>,") {
		t.Errorf("the text part escapes the name:\n%s", m.Text)
	}
}

func TestRender_colour(t *testing.T) {
	cases := []struct{ in, want string }{
		{"#2458D6", "#2458d6"},
		{"#25d", "#2255dd"},
		{"red", mail.NeutralColor},
		{"#12345g", mail.NeutralColor},
		{"#123456;background:url(https://evil.example/x)", mail.NeutralColor},
		{"", mail.NeutralColor},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			m, err := mail.Render(mail.Brand{Name: "x", Color: c.in}, resetAction())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(m.HTML, "border-bottom:4px solid "+c.want) {
				t.Fatalf("colour %q: want %s in\n%s", c.in, c.want, m.HTML)
			}
			if strings.Contains(m.HTML, "evil.example") {
				t.Fatal("the colour smuggled a URL in")
			}
		})
	}
}

func TestRender_bad(t *testing.T) {
	for name, mutate := range map[string]func(*mail.Action){
		"unknown kind":      func(a *mail.Action) { a.Kind = "nope" },
		"relative issuer":   func(a *mail.Action) { a.Issuer = "login.example.com" },
		"javascript":        func(a *mail.Action) { a.Issuer = "javascript:alert(1)" },
		"path to elsewhere": func(a *mail.Action) { a.Path = "//evil.example/x" },
		"path with query":   func(a *mail.Action) { a.Path = "/x?y=1" },
	} {
		t.Run(name, func(t *testing.T) {
			a := resetAction()
			mutate(&a)
			if _, err := mail.Render(mail.Brand{}, a); err == nil {
				t.Fatal("rendered")
			}
		})
	}
}

func TestLinkToken(t *testing.T) {
	tok, hash := mail.NewLinkToken()
	tok2, _ := mail.NewLinkToken()
	if len(tok) < 43 || tok == tok2 {
		t.Fatalf("tokens %q %q", tok, tok2)
	}
	if !mail.TokenMatches(tok, hash) {
		t.Fatal("the token does not match its hash")
	}
	if mail.TokenMatches(tok2, hash) || mail.TokenMatches(tok, nil) || mail.TokenMatches("", hash) {
		t.Fatal("a wrong token matches")
	}
	if strings.Contains(string(hash), tok) {
		t.Fatal("the hash holds the token")
	}
	a, b := mail.PasswordFingerprint("$argon2id$v=19$...$salt1$h"), mail.PasswordFingerprint("$argon2id$v=19$...$salt2$h")
	if mail.SameFingerprint(a, b) || !mail.SameFingerprint(a, mail.PasswordFingerprint("$argon2id$v=19$...$salt1$h")) {
		t.Fatal("fingerprints do not follow the password hash")
	}
}
