// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp)
// in the test process. It speaks STARTTLS with a certificate of its own,
// can insist on it and on a password, can refuse messages to test retries,
// and keeps what it accepts, so a test reads the link out of a delivered
// mail as a person would.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	idpmail "github.com/idp/idp/internal/mail"
)

// Options shape the server.
type Options struct {
	// Plain allows sending without STARTTLS (a ?tls=none URL); by default
	// the server refuses MAIL FROM before the upgrade.
	Plain bool
	// Username and Password, when set, are required (AUTH PLAIN).
	Username, Password string
	// NoStartTLS: the server does not offer STARTTLS at all (a downgrade
	// by someone between, or a badly set up server). Implies Plain.
	NoStartTLS bool
}

// Server is a running SMTP server on 127.0.0.1.
type Server struct {
	T    testing.TB
	Addr string
	// RootCAs trusts the server's certificate (mail.Config.RootCAs).
	RootCAs *x509.CertPool
	opts    Options

	mu       sync.Mutex
	messages []Message
	refuse   int
	arrived  chan struct{}
	srv      *smtp.Server
}

// Message is one accepted mail.
type Message struct {
	From string
	To   []string
	// TLS: it arrived over an encrypted session.
	TLS    bool
	Header mail.Header
	Raw    []byte
	// Text and HTML are the decoded parts.
	Text, HTML string
}

// Start runs a server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	cert, pool := selfSigned(t)
	if opts.NoStartTLS {
		opts.Plain = true
	}
	s := &Server{T: t, RootCAs: pool, opts: opts, arrived: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	srv.Domain = "localhost"
	if !opts.NoStartTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	srv.MaxMessageBytes = 1 << 20
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	// AUTH is offered before STARTTLS only when plain sessions are
	// allowed: otherwise the password is never asked for in the clear.
	srv.AllowInsecureAuth = opts.Plain
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	s.srv = srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// URL is the IDP_SMTP_URL that reaches the server.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	if s.opts.Plain {
		u.RawQuery = "tls=none"
	}
	return u.String()
}

// Config is a mail.Config that sends to the server from from, trusting
// its certificate.
func (s *Server) Config(from string) idpmail.Config {
	s.T.Helper()
	c, err := idpmail.ParseConfig(s.URL(), from)
	if err != nil {
		s.T.Fatal(err)
	}
	c.RootCAs = s.RootCAs
	return c
}

// Refuse makes the server answer the next n messages with a temporary
// failure (451), as a server under load or in an outage would.
func (s *Server) Refuse(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = n
}

// Messages returns what the server accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// To returns the accepted messages for address.
func (s *Server) To(address string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, r := range m.To {
			if strings.EqualFold(r, address) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Wait returns the n-th (from 1) message for address, waiting up to
// timeout for it to arrive; it fails the test otherwise.
func (s *Server) Wait(address string, n int, timeout time.Duration) Message {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := s.To(address); len(got) >= n {
			return got[n-1]
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.T.Fatalf("mailtest: no message %d for %s within %s (have %d)", n, address, timeout, len(s.To(address)))
		}
		select {
		case <-s.arrived:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

var linkRE = regexp.MustCompile(`https?://[^\s<>"]+`)

// Links returns every distinct link in the plain-text part.
func (m Message) Links() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range linkRE.FindAllString(m.Text, -1) {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// Link returns the message's one link, failing t if it has none or more.
func (m Message) Link(t testing.TB) string {
	t.Helper()
	l := m.Links()
	if len(l) != 1 {
		t.Fatalf("mailtest: want exactly one link in the mail, got %q", l)
	}
	return l[0]
}

type session struct {
	s    *Server
	c    *smtp.Conn
	auth bool
	from string
	to   []string
}

func (x *session) tls() bool {
	_, ok := x.c.TLSConnectionState()
	return ok
}

func (x *session) AuthMechanisms() []string {
	if x.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (x *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != x.s.opts.Username || password != x.s.opts.Password {
			return errors.New("invalid username or password")
		}
		x.auth = true
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if !x.s.opts.Plain && !x.tls() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if x.s.opts.Username != "" && !x.auth {
		return smtp.ErrAuthRequired
	}
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := x.s
	s.mu.Lock()
	if s.refuse > 0 {
		s.refuse--
		s.mu.Unlock()
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	s.mu.Unlock()
	m, err := parse(raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Unparseable message: " + err.Error()}
	}
	m.From, m.To, m.TLS = x.from, append([]string(nil), x.to...), x.tls()
	s.mu.Lock()
	s.messages = append(s.messages, m)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

// parse reads a message and its text/plain and text/html parts.
func parse(raw []byte) (Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{}, err
	}
	m := Message{Header: msg.Header, Raw: raw}
	err = walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &m)
	return m, err
}

func walk(contentType, encoding string, body io.Reader, m *Message) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, m); err != nil {
				return err
			}
		}
	}
	b, err := io.ReadAll(decode(encoding, body))
	if err != nil {
		return err
	}
	switch mt {
	case "text/plain":
		m.Text = string(b)
	case "text/html":
		m.HTML = string(b)
	}
	return nil
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailtest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
