package admin

import (
	"context"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/users"
)

// ActionVerifyEmail: an administrator vouched for an account's address
// (where no mail can be sent, or the owner confirmed it another way).
const ActionVerifyEmail = "users.verify_email"

// MarkEmailVerified marks the account's current address verified, with
// the audit record, in one transaction; an address already verified keeps
// the time it was. From then on ID tokens and userinfo say
// email_verified true.
func (s *Service) MarkEmailVerified(ctx context.Context, userID, actor string) (users.User, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		tag, err := tx.Exec(ctx, `UPDATE users SET email_verified_at = coalesce(email_verified_at, $2) WHERE id = $1`, userID, s.now())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return users.ErrNotFound
		}
		if err := s.audit(ctx, tx, actor, ActionVerifyEmail, userID, nil); err != nil {
			return err
		}
		u, err = s.Users.ByID(ctx, userID)
		return err
	})
	return u, wrap("verify email", err)
}
