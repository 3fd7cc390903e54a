package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// usersCreateCommand creates an account. The password comes from the first
// line of stdin, never from a flag: flags show up in shell history and in
// every process listing. It is temporary unless --temporary=false, as
// everywhere an administrator sets one (set-password, the admin API, the
// console): whoever ran the command knows it.
func usersCreateCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("users create", "--email EMAIL [--name NAME] [--admin] [--temporary=false] [--json] < password-file")
	email := fs.String("email", "", "email `address`, the sign-in name (required)")
	name := fs.String("name", "", "display `name`")
	admin := fs.Bool("admin", false, "make the user an administrator")
	temporary := fs.Bool("temporary", true, "the person must replace the password at the first sign-in")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "email"); err != nil {
		return err
	}
	password, err := readPassword(c.stdin, "users create")
	if err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	a, err := c.newAdmin(pool).CreateUser(ctx, users.NewUser{Email: *email, Name: *name, Password: password, Admin: *admin,
		MustChangePassword: *temporary}, cliActor)
	if err != nil {
		return err
	}
	u := a.User
	if *asJSON {
		return printJSON(c.stdout, u)
	}
	role := "user"
	if u.IsAdmin {
		role = "administrator"
	}
	_, err = fmt.Fprintf(c.stdout, "created %s %s (id %s)\n", role, u.Email, u.ID)
	return err
}

// readPassword returns the first line of r without its line ending. Only a
// bounded prefix is read: the policy caps passwords far below it.
func readPassword(r io.Reader, command string) (string, error) {
	hint := "no password on stdin: pass it as the first line, e.g. printf '%s\\n' \"$PASSWORD\" | idp " + command + " --email ..."
	if r == nil {
		return "", usagef("%s", hint)
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("%s", hint)
	}
	return line, nil
}

func usersListCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("users list", "[--limit N] [--json]")
	limit := fs.Int("limit", 0, "list at most `N` users, oldest first (0: all)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	list, err := users.NewStore(pool).List(ctx, *limit)
	if err != nil {
		return err
	}
	return printList(c.stdout, *asJSON, list, "", "ID\tEMAIL\tNAME\tADMIN\tREQUIRE 2FA\tSTATUS\tCREATED", func(u users.User) []string {
		status := "active"
		if u.DisabledAt != nil {
			status = "disabled " + timestamp(*u.DisabledAt)
		}
		return []string{u.ID, u.Email, u.Name, yesNo(u.IsAdmin), yesNo(u.RequireMFA), status, timestamp(u.CreatedAt)}
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// usersResetMFACommand is an administrator's answer to a lost phone: it
// removes the user's second factor and recovery codes and ends all their
// sessions and tokens (offline ones too), in one transaction, so whoever
// holds the phone or a session is out when the user is back in with their
// password alone.
//
// It needs no IDP_SECRET: mfa.TOTP.Disable deletes rows and never opens a
// sealed secret, so the TOTP is built on the pool only.
func usersResetMFACommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "users reset-mfa", "--user EMAIL [--json]", nil, func(o oneUser) error {
		u := o.user
		res, err := o.svc.ResetMFA(ctx, u.ID, cliActor)
		if errors.Is(err, mfa.ErrNotEnrolled) {
			return fmt.Errorf("%s has no two-factor authentication set up; nothing was reset", u.Email)
		}
		if err != nil {
			return fmt.Errorf("reset 2FA of %s: %w", u.Email, err)
		}
		if o.asJSON {
			return printUserResult(c, u, res)
		}
		_, err = fmt.Fprintf(c.stdout, "reset two-factor authentication of %s: %s ended, %s queued; "+
			"they sign in with their password next, and set up 2FA again if it is required\n",
			u.Email, plural(res.Sessions, "session"), plural(res.Notifications, "logout notification"))
		return err
	})
}

// usersSetPasswordCommand is an administrator's answer to a forgotten
// password: it sets the password read from the first line of stdin (never
// a flag, which shell history and process listings would keep) and ends
// all the user's sessions and tokens, offline ones too, in one
// transaction. The password is temporary unless --temporary=false: the
// administrator knows it, so the person replaces it at the next sign-in.
func usersSetPasswordCommand(ctx context.Context, c *cli, args []string) error {
	var temporary *bool
	return c.userCommand(ctx, args, "users set-password", "--user EMAIL [--temporary=false] [--json]   (new password: first line of stdin)",
		func(fs *flag.FlagSet) {
			temporary = fs.Bool("temporary", true, "the person must replace the password at the next sign-in")
		}, func(o oneUser) error {
			u := o.user
			password, err := readPassword(c.stdin, "users set-password")
			if err != nil {
				return err
			}
			res, err := o.svc.SetPassword(ctx, u.ID, password, cliActor, *temporary)
			if err != nil {
				return fmt.Errorf("set the password of %s: %w", u.Email, err)
			}
			if o.asJSON {
				return printUserResult(c, u, res)
			}
			then := "it is theirs to keep"
			if *temporary {
				then = fmt.Sprintf("they choose their own at the next sign-in, within %d hours", int(users.TemporaryPasswordLifetime.Hours()))
			}
			_, err = fmt.Fprintf(c.stdout, "set the password of %s: %s ended, %s queued; %s\n",
				u.Email, plural(res.Sessions, "session"), plural(res.Notifications, "logout notification"), then)
			return err
		})
}

// printUserResult prints, as JSON, what an action on one user ended.
func printUserResult(c *cli, u users.User, res sessions.Result) error {
	return printJSON(c.stdout, struct {
		UserID string `json:"user_id"`
		Email  string `json:"email"`
		sessions.Result
	}{u.ID, u.Email, res})
}
