// Package catcher is the demo's mail catcher: an SMTP server on loopback
// that keeps what it receives in memory, and a web page that shows it, so
// a person trying `make run` can follow a password reset link without a
// mail account. It is for the demo only: no TLS, no authentication, the
// last 100 messages, nothing stored.
package catcher

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Keep is how many messages the catcher remembers.
const Keep = 100

// Message is one caught mail.
type Message struct {
	At       time.Time
	From, To string
	Subject  string
	Text     string
}

// Catcher holds the caught mail.
type Catcher struct {
	mu   sync.Mutex
	msgs []Message // newest last
}

// SMTP returns an SMTP server that delivers into c.
func (c *Catcher) SMTP(addr string) *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{c: c}, nil }))
	s.Addr, s.Domain = addr, "localhost"
	s.MaxMessageBytes, s.MaxRecipients = 1<<20, 10
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	return s
}

// Messages returns the caught mail, newest first.
func (c *Catcher) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Message, len(c.msgs))
	for i, m := range c.msgs {
		out[len(c.msgs)-1-i] = m
	}
	return out
}

func (c *Catcher) add(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	if len(c.msgs) > Keep {
		c.msgs = c.msgs[len(c.msgs)-Keep:]
	}
}

type session struct {
	c        *Catcher
	from, to string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.to != "" {
		s.to += ", "
	}
	s.to += to
	return nil
}
func (s *session) Reset()        { s.from, s.to = "", "" }
func (s *session) Logout() error { return nil }

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "unreadable message"}
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	s.c.add(Message{At: time.Now(), From: s.from, To: s.to, Subject: subject,
		Text: plainText(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body)})
	return nil
}

// plainText finds the message's text/plain part.
func plainText(contentType, encoding string, body io.Reader) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if t := plainText(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); t != "" {
				return t
			}
		}
	}
	if mt != "text/plain" {
		return ""
	}
	switch strings.ToLower(encoding) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, _ := io.ReadAll(io.LimitReader(body, 1<<20))
	return string(b)
}

var linkRE = regexp.MustCompile(`https?://[^\s<>"]+`)

// linkify escapes text and makes its http(s) links clickable.
func linkify(text string) template.HTML {
	var b strings.Builder
	last := 0
	for _, m := range linkRE.FindAllStringIndex(text, -1) {
		b.WriteString(template.HTMLEscapeString(text[last:m[0]]))
		u := template.HTMLEscapeString(text[m[0]:m[1]])
		fmt.Fprintf(&b, `<a href="%s">%s</a>`, u, u)
		last = m[1]
	}
	b.WriteString(template.HTMLEscapeString(text[last:]))
	return template.HTML(b.String())
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{"linkify": linkify}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>Demo mail catcher</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#1d2125}
article{border:1px solid #d0d5da;border-radius:6px;padding:.5em 1em;margin:1em 0}pre{white-space:pre-wrap}
.muted{color:#5b636b;font-size:13px}</style></head><body>
<h1>Demo mail catcher</h1>
<p class="muted">Mail the provider sends in this demo lands here (the page reloads every 5 seconds). The newest is first.</p>
{{range .}}<article><h2>{{.Subject}}</h2><p class="muted">To {{.To}} from {{.From}}, {{.At.Format "15:04:05"}}</p>
<pre>{{linkify .Text}}</pre></article>
{{else}}<p id="empty">No mail yet.</p>{{end}}
</body></html>`))

// ServeHTTP shows the caught mail.
func (c *Catcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err := page.Execute(w, c.Messages()); err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
	}
}
