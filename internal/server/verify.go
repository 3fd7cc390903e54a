package server

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/verify"
)

// VerifyAddresses mails a verification link to every account an
// administrator creates through s (admin API, console, CLI), queued in
// the transaction that creates it, and returns the service that confirms
// the links. cfg needs Mail, Secret (the link's token is sealed while it
// waits in the outbox) and Issuer; the delivering instance's workers send
// it.
func (s *Services) VerifyAddresses(cfg Config, pool *pgxpool.Pool) (*verify.Service, error) {
	cfg.defaults()
	m, err := newMailer(cfg, pool)
	if err != nil {
		return nil, err
	}
	v := &verify.Service{Pool: pool, Mailer: m, Now: cfg.Now}
	s.Admin.OnChange = append(s.Admin.OnChange, v.OnAdminChange)
	return v, nil
}
