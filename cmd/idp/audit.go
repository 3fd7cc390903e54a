package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
)

// auditCommand prints the audit log, newest first: every administrative
// action, from the console, the admin API or this CLI, and every ended
// session with its reason. --user keeps what was done to that user and what
// they did.
func auditCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit", "[--user EMAIL] [--limit N] [--before ID] [--json]")
	email := fs.String("user", "", "only what was done to, or by, the user with this email `address`")
	limit := fs.Int("limit", audit.DefaultLimit, fmt.Sprintf("print at most `N` entries (1 to %d)", audit.MaxLimit))
	before := fs.Int64("before", 0, "only entries older than this `ID` (the last ID of the previous page)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 1 || *limit > audit.MaxLimit {
		return usagef("audit: --limit must be from 1 to %d, not %d", audit.MaxLimit, *limit)
	}
	if *before < 0 {
		return usagef("audit: --before must be an entry ID, not %d", *before)
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc := c.newAdmin(pool)
	q := audit.Query{Limit: *limit, Before: *before}
	if *email != "" {
		u, err := findUser(ctx, svc, *email)
		if err != nil {
			return err
		}
		q.UserID = u.ID
	}
	entries, err := svc.AuditLog(ctx, q)
	if err != nil {
		return err
	}
	return printList(c.stdout, *asJSON, entries, "", "ID\tAT\tACTOR\tACTION\tTARGET\tDETAILS", func(e audit.Entry) []string {
		return []string{strconv.FormatInt(e.ID, 10), timestamp(e.At), e.Actor, e.Action, e.Target, string(e.Details)}
	})
}

// audited runs change and records its action in the audit log, as the
// command line, in one transaction: a change is never left unrecorded.
// change returns what it acted on and the entry's details (no secrets).
func audited(ctx context.Context, pool *pgxpool.Pool, action string, change func(ctx context.Context) (target string, details any, err error)) error {
	return db.Tx(ctx, pool, func(ctx context.Context) error {
		target, details, err := change(ctx)
		if err != nil {
			return err
		}
		return audit.Record(ctx, time.Now(), audit.CLI, action, target, details)
	})
}
