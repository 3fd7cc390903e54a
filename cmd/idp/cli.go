package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// cli is what every command gets: the process's environment and streams,
// injected so commands run in tests without a process.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// usageError marks an error in how the command was invoked (unknown command
// or flag, missing argument): exit status 2 instead of 1.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// flags returns a FlagSet for the command name ("clients create") whose
// errors come back to the caller and whose help goes to stderr; synopsis
// follows the command in the usage line.
func (c *cli) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: idp %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs. A bad flag or a stray argument is a usage
// error; -h gives flag.ErrHelp, which main treats as success.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q (see 'idp %s -h')", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}

// required returns a usage error naming the first flag whose value is empty.
func required(fs *flag.FlagSet, flags ...string) error {
	for _, name := range flags {
		if f := fs.Lookup(name); f != nil && strings.TrimSpace(f.Value.String()) == "" {
			return usagef("%s: missing required flag --%s (see 'idp %s -h')", fs.Name(), name, fs.Name())
		}
	}
	return nil
}

// stringList is a repeatable string flag: --redirect-uri A --redirect-uri B.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// databaseFlag registers --database-url. Its value wins over
// IDP_DATABASE_URL; the environment is not shown as the flag's default in
// help, since the URL may carry a password.
func (c *cli) databaseFlag(fs *flag.FlagSet) *string {
	return fs.String("database-url", "", "PostgreSQL `URL` (default $IDP_DATABASE_URL)")
}

// databaseURL resolves the flag value against IDP_DATABASE_URL.
func (c *cli) databaseURL(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := c.getenv("IDP_DATABASE_URL"); v != "" {
		return v, nil
	}
	return "", usagef("no database: set IDP_DATABASE_URL or pass --database-url")
}

// openPool connects to the database named by the flag value or
// IDP_DATABASE_URL. The caller closes the pool.
func (c *cli) openPool(ctx context.Context, flagValue string) (*pgxpool.Pool, error) {
	url, err := c.databaseURL(flagValue)
	if err != nil {
		return nil, err
	}
	return db.Open(ctx, url)
}

// jsonFlag registers --json.
func jsonFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print JSON")
}

// printList prints a command's list: for --json an array (never null);
// else, when the list is empty and empty is given, that sentence; else a
// table of header's tab-separated columns and one row of cells per item.
func printList[T any](w io.Writer, asJSON bool, list []T, empty, header string, row func(T) []string) error {
	if asJSON {
		if list == nil {
			list = []T{}
		}
		return printJSON(w, list)
	}
	if len(list) == 0 && empty != "" {
		_, err := fmt.Fprintln(w, empty)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, item := range list {
		fmt.Fprintln(tw, strings.Join(row(item), "\t"))
	}
	return tw.Flush()
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
