package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// usersDisableCommand disables an account and, in the same transaction,
// ends its sessions and tokens (reason user_disabled), as the admin API
// does.
func usersDisableCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users disable", "--user EMAIL [--json]", nil, func(o oneUser) error {
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
	return c.userCommand(ctx, args, "users enable", "--user EMAIL [--json]", nil, func(o oneUser) error {
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

// usersRequireMFACommand makes a user enroll a second factor at their next
// sign-in (or, with --off, lifts that).
func usersRequireMFACommand(ctx context.Context, c *cli, args []string) error {
	var off *bool
	return c.userCommand(ctx, args, "users require-mfa", "--user EMAIL [--off] [--json]",
		func(fs *flag.FlagSet) { off = fs.Bool("off", false, "no longer require 2FA of this user") },
		func(o oneUser) error {
			u, err := o.svc.RequireMFA(ctx, o.user.ID, !*off, cliActor)
			if err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(c.stdout, struct {
					User users.User `json:"user"`
				}{u})
			}
			if u.RequireMFA {
				_, err = fmt.Fprintf(c.stdout, "%s must now use two-factor authentication; without it they set it up at the next sign-in\n", u.Email)
			} else {
				_, err = fmt.Fprintf(c.stdout, "%s no longer has to use two-factor authentication (the server-wide policy still applies)\n", u.Email)
			}
			return err
		})
}

// usersDeleteCommand deletes an account, ending its sessions and tokens and
// telling its apps in the same transaction, as the admin API does.
func usersDeleteCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users delete", "--user EMAIL [--json]", nil, func(o oneUser) error {
		res, err := o.svc.DeleteUser(ctx, o.user.ID, cliActor)
		if err != nil {
			return err
		}
		if o.asJSON {
			return printUserResult(c, o.user, res)
		}
		_, err = fmt.Fprintf(c.stdout, "deleted %s and everything stored under it; ended %s: %s\n",
			o.user.Email, plural(res.Sessions, "session"), counts(res))
		return err
	})
}
