package server

import (
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/alerts"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/verify"
)

// newMailer builds the mail path: messages queued on the outbox, sealed
// under the server secret, delivered by the outbox's workers.
func newMailer(cfg Config, pool *pgxpool.Pool) (*mail.Mailer, error) {
	box, err := secrets.New(cfg.Secret, mail.SecretPurpose)
	if err != nil {
		return nil, err
	}
	return &mail.Mailer{Pool: pool, Brand: mail.Brand{Name: cfg.Brand.Name, Color: cfg.Brand.Color}, Issuer: cfg.Issuer,
		Box: box, Sender: &mail.Sender{Config: cfg.Mail, Timeout: mail.SendTimeout}, Now: cfg.Now}, nil
}

// Mailing is what Services.Mail adds to an instance's services.
type Mailing struct {
	Mailer *mail.Mailer
	// Alerts queues the "was this you?" alerts of the services' changes
	// (and, on a server, of sign-ins from new devices).
	Alerts *alerts.Service
	// Verify confirms the verification links mailed for new accounts.
	Verify *verify.Service
}

// Mail makes the services mail, one way for the server and the command
// line, so that a change made with `idp …` mails as the same change made
// through the admin API or the console: "was this you?" alerts of their
// changes (Alert; an administrator's revoke-all among them) and a
// verification link for every account an administrator creates, each
// queued in the transaction of its change and delivered by the instances'
// outbox workers. cfg needs Mail, Secret (mail is sealed while it waits in
// the outbox) and Issuer.
func (s *Services) Mail(cfg Config, pool *pgxpool.Pool) (*Mailing, error) {
	cfg.defaults()
	m, err := newMailer(cfg, pool)
	if err != nil {
		return nil, err
	}
	a := &alerts.Service{Pool: pool, Mailer: m, Sessions: s.Sessions, Secure: strings.HasPrefix(cfg.Issuer, "https://"), Now: cfg.Now}
	s.Alert(a)
	v := &verify.Service{Pool: pool, Mailer: m, Now: cfg.Now}
	s.Admin.OnChange = append(s.Admin.OnChange, v.OnAdminChange)
	return &Mailing{Mailer: m, Alerts: a, Verify: v}, nil
}
