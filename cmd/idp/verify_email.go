package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/users"
)

// mailVerifications makes `idp users create` queue the new account's
// verification mail, as the admin API does, when the environment has
// what a running instance mails with: IDP_SMTP_URL and IDP_MAIL_FROM,
// IDP_SECRET (the link's token is sealed while it waits in the outbox)
// and IDP_ISSUER. The instances' workers deliver it. Without them no
// mail is queued, and a note says so.
func (c *cli) mailVerifications(svc *server.Services, pool *pgxpool.Pool) {
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
		_, err = svc.VerifyAddresses(server.Config{Mail: cfg, Secret: secret, Issuer: issuer}, pool)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "note: no verification mail is queued for accounts created here: %v\n", err)
	}
}

// usersVerifyEmailCommand marks a user's address verified, as an
// administrator who knows it reaches its owner (or where no mail can be
// sent): ID tokens and userinfo then say email_verified true.
func usersVerifyEmailCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users verify-email", "--user EMAIL [--json]", nil, func(o oneUser) error {
		u, err := o.svc.MarkEmailVerified(ctx, o.user.ID, cliActor)
		if err != nil {
			return err
		}
		if o.asJSON {
			return printJSON(c.stdout, struct {
				User users.User `json:"user"`
			}{u})
		}
		_, err = fmt.Fprintf(c.stdout, "%s is now a verified address\n", u.Email)
		return err
	})
}
