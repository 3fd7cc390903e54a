// Package audit owns the audit log: one row per change an administrator,
// the command line, a user or the provider itself makes to accounts,
// sessions, clients and keys, written in the transaction of the change it
// records (so a change and its record stand or fall together), and read
// back newest first.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

// Actors, as recorded: "admin:<user id>" (the console and the admin API),
// "client:<client id>" (an admin service account, through the admin API),
// "user:<user id>" (a person on their own account), CLI and System.
const (
	CLI    = "cli"
	System = "system"
)

// Admin is the actor of an administrator's action.
func Admin(userID string) string { return "admin:" + userID }

// User is the actor of a person's action on their own account.
func User(userID string) string { return "user:" + userID }

// Client is the actor of an admin service account's action through the
// admin API, and the target of an action on a client.
func Client(clientID string) string { return "client:" + clientID }

// Actions a person takes on their own sign-in factors: on the account
// page, or during the sign-in that makes them set up 2FA or replace a
// temporary password. (Other packages name their own actions, e.g.
// "users.disable"; the console says each in words.)
const (
	ActionEnableMFA               = "mfa.enable"
	ActionDisableMFA              = "mfa.disable"
	ActionRegenerateRecoveryCodes = "mfa.regenerate_recovery_codes"
	ActionChangePassword          = "users.change_password"
	ActionAddPasskey              = "passkey.add"
	ActionRemovePasskey           = "passkey.remove"
	// ActionResetPassword: a new password chosen from a mailed reset link.
	ActionResetPassword = "users.reset_password"
)

// Entry is one recorded action: who (actor), what (action, e.g.
// "sessions.revoke"), to what (target: a user id, "sid:<id>",
// "client:<id>", "key:<kid>" or "outbox:<id>") and the details.
type Entry struct {
	ID      int64           `json:"id"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target"`
	Details json.RawMessage `json:"details"`
}

// Facts are the details entries carry that readers put into words; what an
// entry does not carry stays zero.
type Facts struct {
	Reason    string `json:"reason"`    // sessions.revoke: why they ended
	Sessions  int    `json:"sessions"`  // sessions.revoke: how many
	Temporary *bool  `json:"temporary"` // users.set_password
	Require   *bool  `json:"require"`   // users.require_mfa
	Admin     *bool  `json:"admin"`     // users.set_admin
	// ServiceAccount: clients.set_admin
	ServiceAccount *bool `json:"admin_service_account"`
}

// Facts decodes e's details; details that do not decode give no facts.
func (e Entry) Facts() Facts {
	var f Facts
	_ = json.Unmarshal(e.Details, &f)
	return f
}

// Record queues one entry in the unit of work in ctx, the one of the change
// it records, so the entry and the change commit together or not at all;
// its error surfaces when the unit sends it. details is marshalled to JSON
// (nil: {}); it must never hold a secret. Outside a unit, Record fails.
func Record(ctx context.Context, at time.Time, actor, action, target string, details any) error {
	u, ok := db.From(ctx)
	if !ok {
		return fmt.Errorf("audit: record %s: not in a unit of work", action)
	}
	if details == nil {
		details = struct{}{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("audit: record %s: %w", action, err)
	}
	u.Queue(`INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)`,
		at, actor, action, target, b).
		MapErr(func(err error) error { return fmt.Errorf("audit: record %s: %w", action, err) })
	return nil
}

// Query selects entries, newest first.
type Query struct {
	// UserID keeps the entries about that user and those they made, as a
	// user or an administrator; empty keeps all.
	UserID string
	// AboutOnly, with UserID, keeps only the entries about the user (their
	// own actions are about themselves), not what they did to others.
	AboutOnly bool
	// Before keeps entries older than that id: the next page starts at
	// the last id of the previous one. Zero starts at the newest.
	Before int64
	// Limit is the most entries returned: DefaultLimit when zero, MaxLimit
	// when above it.
	Limit int
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// List returns the entries q selects, newest first.
func List(ctx context.Context, conn db.Querier, q Query) ([]Entry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	var (
		rows pgx.Rows
		err  error
	)
	switch {
	case q.UserID == "":
		rows, err = conn.Query(ctx, `
			SELECT id, at, actor, action, target, details FROM audit_log
			WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
	case q.AboutOnly:
		rows, err = conn.Query(ctx, `
			SELECT id, at, actor, action, target, details FROM audit_log
			WHERE target = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, q.UserID, before, limit)
	default:
		// Three index scans (audit_log_target_idx, audit_log_actor_idx)
		// merged, rather than one OR that would read the whole table.
		rows, err = conn.Query(ctx, `
			SELECT id, at, actor, action, target, details FROM (
				(SELECT * FROM audit_log WHERE target = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
				UNION
				(SELECT * FROM audit_log WHERE actor = $4 AND id < $2 ORDER BY id DESC LIMIT $3)
				UNION
				(SELECT * FROM audit_log WHERE actor = $5 AND id < $2 ORDER BY id DESC LIMIT $3)
			) a ORDER BY id DESC LIMIT $3`, q.UserID, before, limit, User(q.UserID), Admin(q.UserID))
	}
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.Details)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	if entries == nil {
		entries = []Entry{}
	}
	return entries, nil
}
