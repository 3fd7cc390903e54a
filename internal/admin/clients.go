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
	return s.setClientPolicy(ctx, clientID, actor, ActionSetRequirePAR, map[string]bool{"require_pushed_authorization_requests": on},
		func(ctx context.Context) error { return s.Clients.SetRequirePAR(ctx, clientID, on) })
}

// ActionSetDPoPBound is the audit action of requiring a client's tokens
// to be DPoP-bound (RFC 9449), or no longer requiring it.
const ActionSetDPoPBound = "clients.set_dpop_bound"

// SetDPoPBound makes the client id get tokens only with a DPoP proof (on),
// or with or without one, and records it, in one transaction.
// clients.ErrNotFound for an unknown client.
func (s *Service) SetDPoPBound(ctx context.Context, clientID string, on bool, actor string) error {
	return s.setClientPolicy(ctx, clientID, actor, ActionSetDPoPBound, map[string]bool{"dpop_bound_access_tokens": on},
		func(ctx context.Context) error { return s.Clients.SetDPoPBound(ctx, clientID, on) })
}

// ActionSetAccessTokenFormat is the audit action of changing the format
// of a client's access tokens (opaque or JWT).
const ActionSetAccessTokenFormat = "clients.set_access_token_format"

// SetAccessTokenFormat makes the client id's access tokens from now on
// clients.AccessTokenOpaque or clients.AccessTokenJWT, and records it, in
// one transaction. clients.ErrNotFound for an unknown client,
// clients.ErrInvalid for another format.
func (s *Service) SetAccessTokenFormat(ctx context.Context, clientID, format, actor string) error {
	return s.setClientPolicy(ctx, clientID, actor, ActionSetAccessTokenFormat, map[string]string{"access_token_format": format},
		func(ctx context.Context) error { return s.Clients.SetAccessTokenFormat(ctx, clientID, format) })
}

// setClientPolicy makes one change of a client's policy and records it
// as action with details, in one transaction. clients.ErrNotFound and
// clients.ErrInvalid are returned as they are, for the caller to word.
func (s *Service) setClientPolicy(ctx context.Context, clientID, actor, action string, details any, change func(context.Context) error) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := change(ctx); err != nil {
			return err
		}
		return audit.Record(ctx, s.now(), actor, action, audit.Client(clientID), details)
	})
	if errors.Is(err, clients.ErrNotFound) || errors.Is(err, clients.ErrInvalid) {
		return err
	}
	return wrap(action, err)
}
