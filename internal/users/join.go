package users

import "github.com/jackc/pgx/v5"

// Columns is the select list of an account, for a package that reads one in
// the same statement as its own rows (the signed-in user with the session)
// from the users table aliased as u. ScanWith reads it.
const Columns = userColumns

// ScanWith scans a row that starts with Columns into a User, and the rest
// into extra. No row is ErrNotFound.
func ScanWith(row pgx.Row, extra ...any) (User, error) {
	return scanUser(row, extra...)
}
