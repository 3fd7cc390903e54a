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
	fs := c.flags("users disable", "--email EMAIL [--json]")
	email := fs.String("email", "", "the user's email `address` (required)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "email"); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc := newAdmin(pool)
	u, err := findUser(ctx, svc, *email)
	if err != nil {
		return err
	}
	u, res, err := svc.Disable(ctx, u.ID, cliActor)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, struct {
			User    users.User      `json:"user"`
			Revoked sessions.Result `json:"revoked"`
		}{u, res})
	}
	_, err = fmt.Fprintf(c.stdout, "disabled %s; ended %s: %s\n", u.Email, plural(res.Sessions, "session"), counts(res))
	return err
}

// usersEnableCommand lets a disabled account sign in again.
func usersEnableCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("users enable", "--email EMAIL [--json]")
	email := fs.String("email", "", "the user's email `address` (required)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "email"); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc := newAdmin(pool)
	u, err := findUser(ctx, svc, *email)
	if err != nil {
		return err
	}
	if u, err = svc.Enable(ctx, u.ID, cliActor); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, struct {
			User users.User `json:"user"`
		}{u})
	}
	_, err = fmt.Fprintf(c.stdout, "enabled %s\n", u.Email)
	return err
}
