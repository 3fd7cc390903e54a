package admin

import (
	"context"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/users"
)

// RequireMFA sets whether the user must use a second factor whatever the
// server-wide policy. A user who must and has none enrolls at the next
// sign-in, before reaching any app; their current sessions stay, since
// requiring a factor does not make them less safe than they were.
func (s *Service) RequireMFA(ctx context.Context, userID string, require bool, actor string) (users.User, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if err := s.Users.SetRequireMFA(ctx, userID, require); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, actor, "users.require_mfa", userID, map[string]bool{"require": require}); err != nil {
			return err
		}
		var err error
		u, err = s.Users.ByID(ctx, userID)
		return err
	})
	if err != nil {
		return users.User{}, wrap("require mfa", err)
	}
	return u, nil
}

// SetAdmin makes the user an administrator (admin), or no longer one, and
// records it, in one transaction. Their admin tokens and console sessions
// follow at the next request, which checks the flag.
func (s *Service) SetAdmin(ctx context.Context, userID string, admin bool, actor string) (users.User, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := s.Users.SetAdmin(ctx, userID, admin); err != nil {
			return err
		}
		if err := audit.Record(ctx, s.now(), actor, "users.set_admin", userID, map[string]bool{"admin": admin}); err != nil {
			return err
		}
		var err error
		u, err = s.Users.ByID(ctx, userID)
		return err
	})
	if err != nil {
		return users.User{}, wrap("set admin", err)
	}
	return u, nil
}
