package admin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEntry is one recorded action: who (actor: "admin:<id>", "user:<id>",
// "cli" or "system"), what (action, e.g. "sessions.revoke"), to what
// (target: a user id, "sid:<id>" or "outbox:<id>") and the details.
type AuditEntry struct {
	ID      int64           `json:"id"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target"`
	Details json.RawMessage `json:"details"`
}

// AuditQuery selects audit entries, newest first.
type AuditQuery struct {
	// UserID keeps the entries about that user and those they made, as a
	// user or an administrator; empty keeps all.
	UserID string
	// Before keeps entries older than that id: the next page starts at
	// the last id of the previous one. Zero starts at the newest.
	Before int64
	// Limit is the most entries returned: DefaultAuditLimit when zero,
	// MaxAuditLimit when above it.
	Limit int
}

// Audit page sizes.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 500
)

// AuditLog returns the entries q selects, newest first. An unknown UserID
// is users.ErrNotFound, so a mistyped id is not mistaken for a quiet user.
func (s *Service) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	var (
		rows pgx.Rows
		err  error
	)
	if q.UserID == "" {
		rows, err = s.Pool.Query(ctx, `
			SELECT id, at, actor, action, target, details FROM audit_log
			WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
	} else {
		if _, err := s.Users.ByID(ctx, q.UserID); err != nil {
			return nil, wrap("audit log", err)
		}
		// Three index scans (audit_log_target_idx, audit_log_actor_idx)
		// merged, rather than one OR that would read the whole table.
		rows, err = s.Pool.Query(ctx, `
			SELECT id, at, actor, action, target, details FROM (
				(SELECT * FROM audit_log WHERE target = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
				UNION
				(SELECT * FROM audit_log WHERE actor = 'user:' || $1 AND id < $2 ORDER BY id DESC LIMIT $3)
				UNION
				(SELECT * FROM audit_log WHERE actor = 'admin:' || $1 AND id < $2 ORDER BY id DESC LIMIT $3)
			) a ORDER BY id DESC LIMIT $3`, q.UserID, before, limit)
	}
	if err != nil {
		return nil, wrap("audit log", err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.Details)
		return e, err
	})
	if err != nil {
		return nil, wrap("audit log", err)
	}
	if entries == nil {
		entries = []AuditEntry{}
	}
	return entries, nil
}
