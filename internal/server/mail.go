package server

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/secrets"
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
