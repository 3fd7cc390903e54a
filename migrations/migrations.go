// Package migrations holds the numbered SQL files that define the schema,
// embedded so the binary carries them.
package migrations

import "embed"

// FS holds every *.sql file; they are applied in lexical order.
//
//go:embed *.sql
var FS embed.FS
