package admin

import (
	"context"
	"errors"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
)

// ResetMFA is an administrator's answer to a lost phone or security key:
// in one transaction it removes the user's second factors (TOTP with its
// recovery codes, and every passkey), ends all their sessions and tokens
// (offline ones too, reason factors_changed) and records the action, so
// whoever holds the phone, the key or a session is out when the user is
// back in with their password alone. mfa.ErrNotEnrolled when the user has
// neither a confirmed TOTP nor a passkey (a set-up never confirmed is not
// 2FA); users.ErrNotFound for an unknown user.
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
		passkeys := 0
		if s.Keys != nil {
			if passkeys, err = s.Keys.RemoveAll(ctx, userID); err != nil {
				return err
			}
		}
		if !on && passkeys == 0 {
			return mfa.ErrNotEnrolled
		}
		if on {
			if err := f.Disable(ctx, userID); err != nil {
				return err
			}
		}
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonFactorsChanged,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		var details any
		if passkeys > 0 {
			details = map[string]int{"passkeys": passkeys}
		}
		return s.audit(ctx, tx, actor, "users.reset_mfa", userID, details)
	})
	if errors.Is(err, mfa.ErrNotEnrolled) {
		return sessions.Result{}, mfa.ErrNotEnrolled
	}
	if err != nil {
		return sessions.Result{}, wrap("reset mfa", err)
	}
	return res, nil
}
