package admin

import (
	"context"
	"errors"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
)

// Passkeys lists the user's passkeys, oldest first. users.ErrNotFound for
// an unknown user; an empty list when the Service has no Passkeys.
func (s *Service) Passkeys(ctx context.Context, userID string) ([]passkey.Passkey, error) {
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return nil, err
	}
	if s.Keys == nil {
		return []passkey.Passkey{}, nil
	}
	list, err := s.Keys.List(ctx, userID)
	return list, wrap("passkeys", err)
}

// HasPasskey reports whether the user has a passkey (false without Keys).
func (s *Service) HasPasskey(ctx context.Context, userID string) (bool, error) {
	if s.Keys == nil {
		return false, nil
	}
	return s.Keys.Registered(ctx, userID)
}

// RemovePasskey removes one of the user's passkeys and, in the same
// transaction, ends all their sessions and tokens (offline ones too,
// reason factors_changed: any of them may have been signed in with it) and
// records the action. passkey.ErrNotFound when the user has no passkey with
// that id; users.ErrNotFound for an unknown user.
func (s *Service) RemovePasskey(ctx context.Context, userID, passkeyID, actor string) (sessions.Result, error) {
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return sessions.Result{}, err
	}
	if s.Keys == nil {
		return sessions.Result{}, passkey.ErrNotFound
	}
	var res sessions.Result
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		removed, _, err := s.Keys.Remove(ctx, userID, passkeyID)
		if err != nil {
			return err
		}
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonFactorsChanged,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		// The passkey's id, never its name: a name may say whose it is.
		return s.audit(ctx, nil, actor, "users.remove_passkey", userID, map[string]string{"passkey": removed.ID})
	})
	if errors.Is(err, passkey.ErrNotFound) {
		return sessions.Result{}, passkey.ErrNotFound
	}
	if err != nil {
		return sessions.Result{}, wrap("remove passkey", err)
	}
	return res, nil
}
