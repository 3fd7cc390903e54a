package admin

import (
	"context"
	"errors"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
)

// ActionSetServiceAccount is the audit action of marking a client as an
// admin service account or removing the mark.
const ActionSetServiceAccount = "clients.set_admin"

// SetServiceAccount marks the client id as an admin service account (on),
// or removes the mark, and records it, in one transaction. Removing it
// stops the client's admin API calls at its next request.
// clients.ErrNotFound for an unknown client, clients.ErrInvalid for one
// that cannot be a service account (public, or without
// client_credentials).
func (s *Service) SetServiceAccount(ctx context.Context, clientID string, on bool, actor string) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := s.Clients.SetAdminServiceAccount(ctx, clientID, on); err != nil {
			return err
		}
		return audit.Record(ctx, s.now(), actor, ActionSetServiceAccount, audit.Client(clientID),
			map[string]bool{"admin_service_account": on})
	})
	if errors.Is(err, clients.ErrNotFound) || errors.Is(err, clients.ErrInvalid) {
		return err
	}
	return wrap("set service account", err)
}

// ActionSetRequirePAR is the audit action of requiring a client to push
// its authorization requests (RFC 9126), or no longer requiring it.
const ActionSetRequirePAR = "clients.set_require_par"

// SetRequirePAR makes the client id take authorization requests only
// through PAR (on), or either way, and records it, in one transaction.
// clients.ErrNotFound for an unknown client.
func (s *Service) SetRequirePAR(ctx context.Context, clientID string, on bool, actor string) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := s.Clients.SetRequirePAR(ctx, clientID, on); err != nil {
			return err
		}
		return audit.Record(ctx, s.now(), actor, ActionSetRequirePAR, audit.Client(clientID),
			map[string]bool{"require_pushed_authorization_requests": on})
	})
	if errors.Is(err, clients.ErrNotFound) {
		return err
	}
	return wrap("set require PAR", err)
}
