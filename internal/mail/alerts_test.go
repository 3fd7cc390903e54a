package mail_test

import (
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/mail"
)

// TestRender_Alerts: each alert kind renders with its facts in both
// parts, escaped in the HTML one, one link, and a week said in days.
func TestRender_Alerts(t *testing.T) {
	facts := []mail.Fact{{Label: "When", Value: "Thu 3 Dec 2026, 11:30 UTC"}, {Label: "Browser", Value: "<script>x</script>"},
		{Label: "Address", Value: "192.0.2.7"}}
	for _, kind := range []string{mail.KindNewDevice, mail.KindPasswordChanged, mail.KindFactorsChanged, mail.KindAdminRevoked} {
		t.Run(kind, func(t *testing.T) {
			m, err := mail.Render(mail.Brand{Name: "Acme"}, mail.Action{Kind: kind, To: "ann@example.com",
				Issuer: "https://login.example.com", Path: "/alerts/not-me", Token: "tok", Expires: 7*24*time.Hour - time.Minute, Facts: facts})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(m.Text, "Browser: <script>x</script>") || !strings.Contains(m.Text, "Address: 192.0.2.7") {
				t.Errorf("text part lacks the facts:\n%s", m.Text)
			}
			if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;") {
				t.Errorf("HTML part does not escape a fact:\n%s", m.HTML)
			}
			if !strings.Contains(m.Text, "7 days") || !strings.Contains(m.Subject, "Acme") {
				t.Errorf("subject %q, text:\n%s", m.Subject, m.Text)
			}
		})
	}
}
