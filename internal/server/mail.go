package server

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/secrets"
)

// newReset builds the password reset by mail.
func newReset(cfg Config, pool *pgxpool.Pool) (*reset.Service, error) {
	box, err := secrets.New(cfg.Secret, mail.SecretPurpose)
	if err != nil {
		return nil, err
	}
	m := &mail.Mailer{Brand: mail.Brand{Name: cfg.Brand.Name, Color: cfg.Brand.Color}, Issuer: cfg.Issuer, Box: box,
		Sender: &mail.Sender{Config: cfg.Mail}, Now: cfg.Now}
	// INTERIM until internal/outbox lands: delivered at once, in the
	// background, not durably. Replaced by outbox.Queue.
	m.Enqueue = func(ctx context.Context, payload []byte) error {
		go func() {
			if err := m.Deliver(context.Background(), payload); err != nil {
				cfg.Logger.Error("mail: deliver", "err", err)
			}
		}()
		return nil
	}
	return reset.New(pool, m, cfg.Now), nil
}
