package main

import (
	"context"
	"fmt"

	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// usersDisableCommand disables an account and, in the same transaction,
// ends its sessions and tokens (reason user_disabled), as the admin API
// does.
func usersDisableCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users disable", "email", "--email EMAIL [--json]", nil, func(o oneUser) error {
		u, res, err := o.svc.Disable(ctx, o.user.ID, cliActor)
		if err != nil {
			return err
		}
		if o.asJSON {
			return printJSON(c.stdout, struct {
				User    users.User      `json:"user"`
				Revoked sessions.Result `json:"revoked"`
			}{u, res})
		}
		_, err = fmt.Fprintf(c.stdout, "disabled %s; ended %s: %s\n", u.Email, plural(res.Sessions, "session"), counts(res))
		return err
	})
}

// usersEnableCommand lets a disabled account sign in again.
func usersEnableCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users enable", "email", "--email EMAIL [--json]", nil, func(o oneUser) error {
		u, err := o.svc.Enable(ctx, o.user.ID, cliActor)
		if err != nil {
			return err
		}
		if o.asJSON {
			return printJSON(c.stdout, struct {
				User users.User `json:"user"`
			}{u})
		}
		_, err = fmt.Fprintf(c.stdout, "enabled %s\n", u.Email)
		return err
	})
}
