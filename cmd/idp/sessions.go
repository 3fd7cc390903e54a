package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// cliActor is who the audit log names for changes made with the CLI.
const cliActor = audit.CLI

// newAdmin builds the administrative service on pool as the server does
// (server.NewServices), so the CLI and the admin API act alike. Its
// actions never open a sealed value: no server secret is needed.
func (c *cli) newAdmin(pool *pgxpool.Pool) *admin.Service {
	return c.services(pool).Admin
}

// userStore is the accounts store on pool, as idp serve builds it (asking
// the breached-password service of IDP_BREACHED_PASSWORDS_URL about the
// passwords it is given).
func (c *cli) userStore(pool *pgxpool.Pool) *users.Store {
	return c.services(pool).Users
}

// services are the domain services on pool, built as idp serve builds
// them, from the environment the CLI shares with it.
func (c *cli) services(pool *pgxpool.Pool) *server.Services {
	svc, err := server.NewServices(pool, server.Config{BreachedPasswordsURL: c.getenv("IDP_BREACHED_PASSWORDS_URL"),
		Logger: slog.New(slog.NewTextHandler(c.stderr, nil))})
	if err != nil {
		panic(err) // only a server secret could make it fail, and none is given
	}
	if issuer := c.getenv("IDP_ISSUER"); issuer != "" {
		// A revocation from the command line is a security event like any
		// other; the issuer names the person in the events (iss_sub).
		svc.PublishSignals(issuer, nil)
	}
	c.mail(svc, pool)
	return svc
}

// findUser finds the account an email names, with a message a person can
// act on when there is none.
func findUser(ctx context.Context, svc *admin.Service, email string) (users.User, error) {
	a, err := svc.FindUser(ctx, email)
	if errors.Is(err, users.ErrNotFound) {
		return users.User{}, fmt.Errorf("no user with email %s (see 'idp users list')", strings.TrimSpace(email))
	}
	return a.User, err
}

// oneUser is what a command about one user gets: the user, the
// administrative service on an open pool, and whether to print JSON.
type oneUser struct {
	svc    *admin.Service
	user   users.User
	asJSON bool
}

// userCommand runs the commands that act on one user: it parses
// "--user EMAIL [--json]" (--email is the same flag, for scripts written
// before) and the flags extra registers, opens the database, finds the user
// and calls fn.
func (c *cli) userCommand(ctx context.Context, args []string, name, synopsis string,
	extra func(*flag.FlagSet), fn func(oneUser) error) error {
	const emailFlag = "user"
	fs := c.flags(name, synopsis)
	email := fs.String(emailFlag, "", "the user's email `address` (required)")
	fs.StringVar(email, "email", "", "the same as --user")
	if extra != nil {
		extra(fs)
	}
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, emailFlag); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc := c.newAdmin(pool)
	u, err := findUser(ctx, svc, *email)
	if err != nil {
		return err
	}
	return fn(oneUser{svc: svc, user: u, asJSON: *asJSON})
}

func sessionsListCommand(ctx context.Context, c *cli, args []string) error {
	var revoked *bool
	return c.userCommand(ctx, args, "sessions list", "--user EMAIL [--include-revoked] [--json]",
		func(fs *flag.FlagSet) {
			revoked = fs.Bool("include-revoked", false, "also list sessions revoked in the last week, with the state of each app's logout notification")
		},
		func(o oneUser) error { return printSessions(ctx, c, o, *revoked) })
}

func printSessions(ctx context.Context, c *cli, o oneUser, revoked bool) error {
	u := o.user
	list, err := o.svc.ListSessions(ctx, u.ID, admin.ListOptions{Revoked: revoked})
	if err != nil {
		return err
	}
	if o.asJSON {
		return printJSON(c.stdout, list)
	}
	if len(list.Sessions) == 0 {
		_, err := fmt.Fprintf(c.stdout, "%s has no live sessions\n", u.Email)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	header := "SID\tSTARTED\tLAST SEEN\tDEVICE\tADDRESS\tAPPS"
	if revoked {
		header += "\tENDED"
	}
	fmt.Fprintln(tw, header)
	for _, s := range list.Sessions {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", s.SID, timestamp(s.CreatedAt), timestamp(s.LastSeenAt),
			orDash(shorten(s.UserAgent, 40)), orDash(s.IP), orDash(appsColumn(s.Apps)))
		if revoked {
			ended := "-"
			if s.RevokedAt != nil {
				ended = timestamp(*s.RevokedAt) + " " + s.RevokedReason
			}
			line += "\t" + ended
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// appsColumn names a session's apps and, once it has ended, whether each
// confirmed the logout: "app-a: delivered, app-b: pending (3 attempts)".
func appsColumn(apps []admin.App) string {
	parts := make([]string, 0, len(apps))
	for _, a := range apps {
		p := a.ClientID
		if n := len(a.Notifications); n > 0 {
			last := a.Notifications[n-1]
			p += ": " + last.State
			if last.State != admin.StateDelivered && last.Attempts > 0 {
				p += fmt.Sprintf(" (%d attempts)", last.Attempts)
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func sessionsRevokeCommand(ctx context.Context, c *cli, args []string) error {
	return c.userCommand(ctx, args, "sessions revoke", "--user EMAIL [--json]", nil, func(o oneUser) error {
		res, err := o.svc.RevokeSessions(ctx, o.user.ID, cliActor)
		if err != nil {
			return err
		}
		if o.asJSON {
			return printJSON(c.stdout, res)
		}
		_, err = fmt.Fprintf(c.stdout, "revoked %s of %s: %s\n", plural(res.Sessions, "session"), o.user.Email, counts(res))
		return err
	})
}

// counts describes what a revocation ended besides the sessions.
func counts(res sessions.Result) string {
	return fmt.Sprintf("%s, %s; %s queued",
		plural(res.AccessTokens, "access token"), plural(res.RefreshTokens, "refresh token"),
		plural(res.Notifications, "logout notification"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to n runes, marking the cut, so one long user agent does
// not stretch the whole table.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
