// Command idp is the identity provider: `idp serve` runs it, and the other
// commands administer its database (migrations, users, OAuth clients,
// signing keys, the server secret's rotation).
//
// This package is the composition root: it parses flags and environment,
// builds the stores and hands them to the domain packages. It holds no logic
// of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on w as "idp: <message>" and returns the process
// status: 0 for success or -h, 2 for a usage error, 1 otherwise.
func exitCode(err error, w io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(w, "idp: %v\n", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	return dispatch(ctx, c, "", commands(), args)
}

// A command is a verb of the CLI. It has either run or subcommands.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
	subs    []command
}

// commands is the whole command tree; adding a command is adding an entry.
func commands() []command {
	return []command{
		{name: "serve", summary: "run the identity provider", run: serveCommand},
		{name: "migrate", summary: "apply pending database migrations", run: migrateCommand},
		{name: "users", summary: "manage user accounts", subs: []command{
			{name: "create", summary: "create a user (password read from stdin)", run: usersCreateCommand},
			{name: "list", summary: "list users", run: usersListCommand},
			{name: "disable", summary: "disable a user and end all their sessions", run: usersDisableCommand},
			{name: "enable", summary: "let a disabled user sign in again", run: usersEnableCommand},
			{name: "delete", summary: "delete a user, ending their sessions (apps are told)", run: usersDeleteCommand},
			{name: "reset-mfa", summary: "remove a user's 2FA and end all their sessions", run: usersResetMFACommand},
			{name: "set-password", summary: "replace a user's password (first line of stdin) and end all their sessions", run: usersSetPasswordCommand},
			{name: "verify-email", summary: "mark a user's address verified (email_verified true in ID tokens)", run: usersVerifyEmailCommand},
			{name: "require-mfa", summary: "make a user set up 2FA at the next sign-in (--off lifts it)", run: usersRequireMFACommand},
			{name: "passkeys", summary: "list and remove a user's passkeys", subs: []command{
				{name: "list", summary: "list a user's passkeys", run: usersPasskeysListCommand},
				{name: "remove", summary: "remove one of a user's passkeys and end all their sessions", run: usersPasskeysRemoveCommand},
			}},
		}},
		{name: "keys", summary: "rotate and list token signing keys", subs: []command{
			{name: "rotate", summary: "add a signing key, published now and signing after --publish-ahead", run: keysRotateCommand},
			{name: "list", summary: "list signing keys and which one signs", run: keysListCommand},
		}},
		{name: "secrets", summary: "rotate the server secret (IDP_SECRET)", subs: []command{
			{name: "reencrypt", summary: "re-seal TOTP secrets and signing keys under the first value of IDP_SECRET", run: secretsReencryptCommand},
		}},
		{name: "clients", summary: "manage OAuth clients", subs: []command{
			{name: "create", summary: "register a client and print its secret once", run: clientsCreateCommand},
			{name: "list", summary: "list clients", run: clientsListCommand},
			{name: "delete", summary: "delete a client and revoke its tokens", run: clientsDeleteCommand},
			{name: "set-admin", summary: "mark a client as an admin service account, or --admin=false to remove the mark", run: clientsSetAdminCommand},
			{name: "registration-token", summary: "make an initial access token for dynamic client registration and print it once", run: clientsRegistrationTokenCommand},
		}},
		{name: "audit", summary: "print the audit log, newest first (--user: to or by one user)", run: auditCommand},
		{name: "sessions", summary: "list and revoke a user's SSO sessions", subs: []command{
			{name: "list", summary: "list a user's sessions and their apps", run: sessionsListCommand},
			{name: "revoke", summary: "end all of a user's sessions and tokens", run: sessionsRevokeCommand},
		}},
		{name: "signals", summary: "Shared Signals (SSF): the receivers' event streams, the transmitters we trust", subs: []command{
			{name: "streams", summary: "the streams receivers created", subs: []command{
				{name: "list", summary: "list streams, their status, backlog and last error", run: signalsStreamsListCommand},
				{name: "show", summary: "show one stream: its status, waiting, held and failed events, last error", run: signalsStreamsShowCommand},
			}},
			{name: "transmitters", summary: "the transmitters this provider trusts as a receiver", subs: []command{
				{name: "add", summary: "trust a transmitter: its issuer, events, subjects, push or poll; create our stream there", run: signalsTransmittersAddCommand},
				{name: "list", summary: "list trusted transmitters", run: signalsTransmittersListCommand},
				{name: "verify", summary: "ask a transmitter for a verification event on our stream", run: signalsTransmittersVerifyCommand},
				{name: "remove", summary: "stop trusting a transmitter (and delete our stream there)", run: signalsTransmittersRemoveCommand},
			}},
		}},
	}
}

// dispatch finds the command named by args[0] among cmds and runs it with
// the remaining args. path is the command so far ("" or "clients").
func dispatch(ctx context.Context, c *cli, path string, cmds []command, args []string) error {
	full := func(name string) string {
		if path == "" {
			return name
		}
		return path + " " + name
	}
	if len(args) == 0 {
		printCommands(c.stderr, path, cmds)
		return usagef("%s", "missing command"+inPath(path))
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		printCommands(c.stdout, path, cmds)
		return nil
	}
	for _, cmd := range cmds {
		if cmd.name != args[0] {
			continue
		}
		if cmd.subs != nil {
			return dispatch(ctx, c, full(cmd.name), cmd.subs, args[1:])
		}
		return cmd.run(ctx, c, args[1:])
	}
	prefix := strings.TrimSpace("idp " + path)
	if strings.HasPrefix(args[0], "-") {
		return usagef("flag %s given before the command; flags follow it: '%s <command> %s' (see '%s help')",
			args[0], prefix, args[0], prefix)
	}
	return usagef("unknown command %q (see '%s help')", full(args[0]), prefix)
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " after '" + path + "'"
}

func printCommands(w io.Writer, path string, cmds []command) {
	prefix := "idp"
	if path != "" {
		prefix += " " + path
	}
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", prefix)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, cmd := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", prefix)
}
