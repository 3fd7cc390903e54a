package main

import (
	"context"
	"fmt"

	"github.com/idp/idp/internal/users"
)

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
