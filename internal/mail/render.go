package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"
)

//go:embed templates/message.txt templates/message.html
var templateFS embed.FS

// Parsed once: a template that does not parse fails every test at start.
var (
	textTemplate = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/message.txt"))
	htmlTemplate = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/message.html"))
)

// Brand is what the operator's brand changes in a mail.
type Brand struct {
	Name  string // "idp" when empty
	Color string // #rrggbb (#rgb is widened); anything else gives NeutralColor
}

// NeutralColor is a mail's colour when the brand has none a mail client
// can be trusted with.
const NeutralColor = "#3c4650"

var (
	hex6 = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	hex3 = regexp.MustCompile(`^#[0-9a-fA-F]{3}$`)
)

// color is the brand colour as #rrggbb, which every mail client reads,
// or NeutralColor: the value lands in a style attribute, so nothing but a
// plain hex colour is let through.
func (b Brand) color() string {
	c := b.Color
	if hex3.MatchString(c) {
		c = string([]byte{'#', c[1], c[1], c[2], c[2], c[3], c[3]})
	}
	if !hex6.MatchString(c) {
		return NeutralColor
	}
	return strings.ToLower(c)
}

// onColor is the button's text colour: white, or near-black on a light
// brand colour.
func onColor(c string) string {
	var l float64
	for i, w := range []float64{0.299, 0.587, 0.114} {
		v, _ := strconv.ParseUint(c[1+2*i:3+2*i], 16, 8)
		l += w * float64(v)
	}
	if l > 160 {
		return "#111418"
	}
	return "#ffffff"
}

// Kinds of message.
const (
	KindPasswordReset = "password_reset"
)

// Action is one message to one person: what it asks them to do, and the
// link that does it.
type Action struct {
	Kind string
	To   string // the address
	Name string // the person's display name; may be empty
	// Issuer is the provider's public URL (IDP_ISSUER): every link starts
	// with it, never with a Host header.
	Issuer string
	// Path and Token make the link: Issuer + Path + "?token=" + Token.
	Path, Token string
	// Expires is how long the link works, said in the mail.
	Expires time.Duration
}

// Message is a rendered mail.
type Message struct {
	To, Subject string
	Text, HTML  string
	// Link is the one link the message carries.
	Link string
}

// copyOf is what each kind says.
type copyOf struct{ subject, lead, button, footer string }

var kinds = map[string]copyOf{
	KindPasswordReset: {
		subject: "Reset your %s password",
		lead:    "Someone, probably you, asked to reset the password of your %s account. Follow the link to choose a new one.",
		button:  "Choose a new password",
		footer:  "If you did not ask for this, ignore this mail: your password stays as it is, and the link works only once.",
	},
}

// ErrUnknownKind is a message kind Render has no words for.
var ErrUnknownKind = errors.New("mail: unknown message kind")

// Render makes the message for a: a plain-text and an HTML part saying
// the same, with exactly one link (no images, no tracking).
func Render(b Brand, a Action) (Message, error) {
	k, ok := kinds[a.Kind]
	if !ok {
		return Message{}, fmt.Errorf("%w %q", ErrUnknownKind, a.Kind)
	}
	link, err := Link(a.Issuer, a.Path, a.Token)
	if err != nil {
		return Message{}, err
	}
	name := b.Name
	if name == "" {
		name = "idp"
	}
	greeting := "Hello,"
	if n := strings.TrimSpace(a.Name); n != "" {
		greeting = "Hello " + n + ","
	}
	color := b.color()
	data := map[string]any{
		"Subject": fmt.Sprintf(k.subject, name), "Brand": name, "Color": color, "OnColor": onColor(color),
		"Greeting": greeting, "Lead": fmt.Sprintf(k.lead, name), "Button": k.button, "Footer": k.footer,
		"Link": link, "Expiry": expiry(a.Expires),
	}
	var text, html bytes.Buffer
	if err := textTemplate.Execute(&text, data); err != nil {
		return Message{}, fmt.Errorf("mail: render: %w", err)
	}
	// html/template treats the link as a URL attribute: it is http(s)
	// from Link, so it is kept as is.
	if err := htmlTemplate.Execute(&html, data); err != nil {
		return Message{}, fmt.Errorf("mail: render: %w", err)
	}
	return Message{To: a.To, Subject: data["Subject"].(string), Text: text.String(), HTML: html.String(), Link: link}, nil
}

func expiry(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d >= 47*time.Hour:
		n := int((d + 12*time.Hour) / (24 * time.Hour))
		return fmt.Sprintf("The link works for %d days.", n)
	case d%time.Hour == 0:
		return fmt.Sprintf("The link works for %d hour%s.", d/time.Hour, plural(int(d/time.Hour)))
	default:
		m := int(d.Round(time.Minute) / time.Minute)
		return fmt.Sprintf("The link works for %d minute%s.", m, plural(m))
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Link builds issuer + path + "?token=" + token. The issuer must be an
// absolute http(s) URL and path a path on it.
func Link(issuer, path, token string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("mail: link: the issuer %q is not an absolute http(s) URL", issuer)
	}
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("mail: link: %q is not a path", path)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	if token != "" {
		u.RawQuery = url.Values{"token": {token}}.Encode()
	}
	return u.String(), nil
}
