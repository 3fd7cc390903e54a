package main

import (
	"context"
	"fmt"

	"github.com/idp/idp/internal/db"
)

// migrateCommand applies the embedded migrations the database lacks.
func migrateCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("migrate", "[--database-url URL] [--json]")
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
	applied, err := db.Migrate(ctx, pool)
	// Report what was applied even when a later migration failed.
	if *asJSON {
		if applied == nil {
			applied = []string{}
		}
		if jerr := printJSON(c.stdout, map[string]any{"applied": applied}); jerr != nil && err == nil {
			err = jerr
		}
		return err
	}
	for _, name := range applied {
		fmt.Fprintf(c.stdout, "applied %s\n", name)
	}
	if err == nil && len(applied) == 0 {
		fmt.Fprintln(c.stdout, "database is up to date; nothing to apply")
	}
	return err
}
