package admin

import (
	"context"
	"errors"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
)

// ResetMFA is an administrator's answer to a lost phone: in one
// transaction it removes the user's second factor and recovery codes, ends
// all their sessions and tokens (offline ones too, reason factors_changed)
// and records the action, so whoever holds the phone or a session is out
// when the user is back in with their password alone. mfa.ErrNotEnrolled
// when the user has no confirmed second factor (a set-up never confirmed
// is not 2FA); users.ErrNotFound for an unknown user.
func (s *Service) ResetMFA(ctx context.Context, userID, actor string) (sessions.Result, error) {
	f := s.MFA
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return sessions.Result{}, err
	}
	var res sessions.Result
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		on, err := f.Enabled(ctx, userID)
		if err != nil {
			return err
		}
		if !on {
			return mfa.ErrNotEnrolled
		}
		if err := f.Disable(ctx, userID); err != nil {
			return err
		}
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonFactorsChanged,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "users.reset_mfa", userID, nil)
	})
	if errors.Is(err, mfa.ErrNotEnrolled) {
		return sessions.Result{}, mfa.ErrNotEnrolled
	}
	if err != nil {
		return sessions.Result{}, wrap("reset mfa", err)
	}
	return res, nil
}
