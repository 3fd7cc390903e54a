package admin

import (
	"context"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// SetPassword is an administrator's answer to a forgotten password: in one
// transaction it replaces the user's password, ends all their sessions and
// tokens (offline ones too, reason factors_changed, so their apps are told)
// and records the action. Whoever knew the old password, or held a session
// opened with it, is out. A temporary password (the usual case: the
// administrator knows it) must be replaced by the person at their next
// sign-in. Errors: a *users.PolicyError for a password the policy refuses
// (checked before anything else), users.ErrNotFound.
func (s *Service) SetPassword(ctx context.Context, userID, password, actor string, temporary bool) (sessions.Result, error) {
	// Chosen (checked and hashed) before the transaction.
	chosen, err := s.Users.ChoosePassword(ctx, password)
	if err != nil {
		return sessions.Result{}, err
	}
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return sessions.Result{}, err
	}
	var res sessions.Result
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if err := s.Users.StorePassword(ctx, userID, chosen, temporary); err != nil {
			return err
		}
		var err error
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonFactorsChanged,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "users.set_password", userID, map[string]bool{"temporary": temporary})
	})
	if err != nil {
		return sessions.Result{}, wrap("set password", err)
	}
	return res, nil
}
