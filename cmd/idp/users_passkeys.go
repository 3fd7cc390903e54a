package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/idp/idp/internal/passkey"
)

// usersPasskeysListCommand lists a user's passkeys.
func usersPasskeysListCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users passkeys list", "--user EMAIL [--json]", nil, func(o oneUser) error {
		list, err := o.svc.Passkeys(ctx, o.user.ID)
		if err != nil {
			return err
		}
		return printList(c.stdout, o.asJSON, list, o.user.Email+" has no passkeys", "ID\tNAME\tKIND\tTRANSPORTS\tADDED\tLAST USED", func(p passkey.Passkey) []string {
			kind, used := "device-bound", "never"
			if p.Synced() {
				kind = "synced"
			}
			if p.LastUsedAt != nil {
				used = timestamp(*p.LastUsedAt)
			}
			return []string{p.ID, p.Name, kind, strings.Join(p.Transports, ","), timestamp(p.CreatedAt), used}
		})
	})
}

// usersPasskeysRemoveCommand removes one of a user's passkeys and ends all
// their sessions and tokens in the same transaction (apps are told), as
// the console and the admin API do.
func usersPasskeysRemoveCommand(ctx context.Context, c *cli, args []string) error {
	var id *string
	return c.userCommand(ctx, args, "users passkeys remove", "--user EMAIL --id PASSKEY-ID [--json]",
		func(fs *flag.FlagSet) {
			id = fs.String("id", "", "the passkey's `id` (from 'idp users passkeys list'; required)")
		},
		func(o oneUser) error {
			if *id == "" {
				return usagef("missing required flag --id")
			}
			res, err := o.svc.RemovePasskey(ctx, o.user.ID, *id, cliActor)
			if errors.Is(err, passkey.ErrNotFound) {
				return fmt.Errorf("%s has no passkey with id %s (see 'idp users passkeys list --user %s')", o.user.Email, *id, o.user.Email)
			}
			if err != nil {
				return fmt.Errorf("remove the passkey of %s: %w", o.user.Email, err)
			}
			if o.asJSON {
				return printUserResult(c, o.user, res)
			}
			_, err = fmt.Fprintf(c.stdout, "removed passkey %s of %s: %s ended, %s queued\n",
				*id, o.user.Email, plural(res.Sessions, "session"), plural(res.Notifications, "logout notification"))
			return err
		})
}
