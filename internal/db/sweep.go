package db

import "time"

// A Sweep names rows of a table that nobody needs any more, for the
// janitor (package ops) to delete in batches. Each package declares the
// sweeps of the tables it owns, so the janitor knows no table by name.
type Sweep struct {
	Table string
	// Key is the table's primary key column.
	Key string
	// Due is the condition that makes a row deletable, with $1 the
	// cut-off: now minus Keep.
	Due string
	// Keep is how long past its moment (expiry, last use, delivery) a row
	// is kept.
	Keep time.Duration
	// Rare sweeps run only on the janitor's full sweeps: no index serves
	// their Due, and their tables grow slowly.
	Rare bool
}
