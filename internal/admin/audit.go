package admin

import (
	"context"

	"github.com/idp/idp/internal/audit"
)

// AuditLog returns the audit entries q selects, newest first. An unknown
// UserID is users.ErrNotFound, so a mistyped id is not mistaken for a quiet
// user.
func (s *Service) AuditLog(ctx context.Context, q audit.Query) ([]audit.Entry, error) {
	if q.UserID != "" {
		if _, err := s.Users.ByID(ctx, q.UserID); err != nil {
			return nil, wrap("audit log", err)
		}
	}
	entries, err := audit.List(ctx, s.Pool, q)
	return entries, wrap("audit log", err)
}
