package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/server"
)

// mail makes the CLI's changes mail as the admin API's do
// (server.Services.Mail): `idp users create` queues the new account's
// verification mail, `idp sessions revoke` the "was this you?" alert, when
// the environment has what a running instance mails with: IDP_SMTP_URL
// and IDP_MAIL_FROM, IDP_SECRET (mail is sealed while it waits in the
// outbox) and IDP_ISSUER. The instances' workers deliver it. Without them
// no mail is queued, and a note says so.
func (c *cli) mail(svc *server.Services, pool *pgxpool.Pool) {
	smtpURL, from := c.getenv("IDP_SMTP_URL"), c.getenv("IDP_MAIL_FROM")
	if smtpURL == "" && from == "" {
		return
	}
	cfg, err := mail.ParseConfig(smtpURL, from)
	secret, issuer := c.getenv("IDP_SECRET"), c.getenv("IDP_ISSUER")
	if err == nil && (secret == "" || issuer == "") {
		err = fmt.Errorf("IDP_SECRET and IDP_ISSUER are needed as well")
	}
	if err == nil {
		_, err = svc.Mail(server.Config{Mail: cfg, Secret: secret, Issuer: issuer}, pool)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "note: no mail is queued for changes made here (no verification mail for accounts created, "+
			"no \"was this you?\" alert): %v\n", err)
	}
}
