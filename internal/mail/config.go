package mail

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
)

// ErrNotConfigured means no SMTP server is set: the mail features are off.
var ErrNotConfigured = errors.New("mail: not configured (IDP_SMTP_URL and IDP_MAIL_FROM)")

// Security is how the connection to the SMTP server is protected.
type Security string

const (
	// StartTLS (smtp://, port 587 by default): the session must upgrade
	// with STARTTLS before anything is sent; a server that does not offer
	// it is refused, never used in the clear.
	StartTLS Security = "starttls"
	// ImplicitTLS (smtps://, port 465 by default): TLS from the first byte.
	ImplicitTLS Security = "tls"
	// None (smtp://…?tls=none): plain text, allowed only to a loopback
	// host (tests, the demo's mail catcher).
	None Security = "none"
)

// Config is where and how mail is sent.
type Config struct {
	Host     string
	Port     int
	Security Security
	Username string
	Password string
	// From is the sender address (IDP_MAIL_FROM), possibly with a display
	// name: "Example Login <login@example.com>".
	From string
	// RootCAs, when set, are the authorities trusted for the server's
	// certificate instead of the system's (tests). Never from the URL.
	RootCAs *x509.CertPool
}

// ParseConfig reads IDP_SMTP_URL and IDP_MAIL_FROM. Both empty is
// ErrNotConfigured; one without the other is a mistake. Errors name the
// variable at fault and never repeat the password.
func ParseConfig(smtpURL, from string) (Config, error) {
	smtpURL, from = strings.TrimSpace(smtpURL), strings.TrimSpace(from)
	if smtpURL == "" && from == "" {
		return Config{}, ErrNotConfigured
	}
	var errs []error
	var c Config
	if smtpURL == "" {
		errs = append(errs, errors.New("IDP_SMTP_URL is required when IDP_MAIL_FROM is set, e.g. smtp://user:pass@mail.example.com:587"))
	} else if err := c.parseURL(smtpURL); err != nil {
		errs = append(errs, err)
	}
	switch a, err := mail.ParseAddress(from); {
	case from == "":
		errs = append(errs, errors.New("IDP_MAIL_FROM is required when IDP_SMTP_URL is set, e.g. login@example.com"))
	case err != nil:
		errs = append(errs, fmt.Errorf("IDP_MAIL_FROM must be an address like login@example.com or \"Example <login@example.com>\", not %q", from))
	default:
		c.From = a.String()
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) parseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url's own message quotes the URL, password and all.
		return errors.New("IDP_SMTP_URL is not a URL; expected smtp://user:pass@host:587 or smtps://user:pass@host:465")
	}
	switch u.Scheme {
	case "smtp":
		c.Security, c.Port = StartTLS, 587
	case "smtps":
		c.Security, c.Port = ImplicitTLS, 465
	default:
		return fmt.Errorf("IDP_SMTP_URL must start with smtp:// (STARTTLS) or smtps:// (implicit TLS), not %q", u.Scheme+"://")
	}
	c.Host = u.Hostname()
	if c.Host == "" || u.Opaque != "" {
		return errors.New("IDP_SMTP_URL names no host; expected smtp://user:pass@host:587")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("IDP_SMTP_URL has a bad port %q", p)
		}
		c.Port = n
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return errors.New("IDP_SMTP_URL must have no path or fragment")
	}
	q := u.Query()
	for k := range q {
		if k != "tls" {
			return fmt.Errorf("IDP_SMTP_URL has an unknown parameter %q (only tls=none is known)", k)
		}
	}
	if q.Has("tls") {
		if q.Get("tls") != "none" || u.Scheme != "smtp" {
			return errors.New("IDP_SMTP_URL: tls=none is the only tls parameter, and only with smtp://")
		}
		if !loopback(c.Host) {
			return fmt.Errorf("IDP_SMTP_URL: tls=none is allowed only to a loopback host (localhost, 127.0.0.1, ::1), not %q: mail to any other host must be encrypted", c.Host)
		}
		c.Security = None
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String describes the configuration for a log line, without the password.
func (c Config) String() string {
	if c.Host == "" {
		return "mail off"
	}
	scheme := "smtp"
	if c.Security == ImplicitTLS {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.Username != "" {
		if c.Password != "" {
			u.User = url.UserPassword(c.Username, "xxxxx")
		} else {
			u.User = url.User(c.Username)
		}
	}
	if c.Security == None {
		u.RawQuery = "tls=none"
	}
	return fmt.Sprintf("%s from %s", u.Redacted(), c.From)
}

// Enabled reports whether mail is configured.
func (c Config) Enabled() bool { return c.Host != "" }
