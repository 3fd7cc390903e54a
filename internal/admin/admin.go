// Package admin owns what an administrator can do to accounts and their
// sessions, and the administrators' API under /admin/api that exposes it:
// finding users, listing their sessions with each app's logout-notification
// state, revoking all of a user's sessions and tokens, disabling and
// enabling accounts, retrying a logout notification, and the Shared
// Signals streams of package ssf (listing them, retrying their events,
// pausing, enabling and disabling them).
//
// Service is the domain layer, shared by the API, the console and the CLI
// (`idp sessions`, `idp users disable|enable`, `idp clients set-admin`).
// API accepts only bearer access tokens from this provider with the admin
// scope, held by a user who is an administrator now and signed in recently
// with two factors, or by a client that is an admin service account now;
// every change it makes is recorded in the audit log with the
// administrator ("admin:<id>") or the client ("client:<id>") as actor.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/users"
)

// Factors is what the service needs of second factors (mfa.TOTP): whether
// a user has one, and removing it.
type Factors interface {
	Enabled(ctx context.Context, userID string) (bool, error)
	// Disable deletes the user's second factor and recovery codes.
	Disable(ctx context.Context, userID string) error
}

// Service carries out administrative actions. Each change runs in one
// transaction together with its audit record, so an action either happens
// and is recorded, or neither.
type Service struct {
	Pool     *pgxpool.Pool
	Users    *users.Store
	Sessions *sessions.Manager
	// Clients is the client registry: the admin API asks it whether a
	// client is an admin service account.
	Clients *clients.Store
	// MFA, when set, fills Account.MFAEnabled.
	MFA Factors
	// Keys, when set, are the users' passkeys: listed with the account,
	// removable one by one, and removed by ResetMFA.
	Keys *passkey.Service
	Now  func() time.Time
	// RecentlyRevoked is how far back a listing with revoked sessions
	// reaches (DefaultRecentlyRevoked when zero).
	RecentlyRevoked time.Duration
	// Streams, when set, are the Shared Signals streams an administrator
	// may retry, pause, enable and disable.
	Streams *ssf.Store
	// OnChange hooks run in the transaction of every audited change, with
	// its target (a user id for changes to an account), action and details
	// (the security events of package ssf); an error rolls the change back.
	OnChange []func(ctx context.Context, target, action string, details any) error
}

// DefaultRecentlyRevoked keeps a week of revoked sessions visible: long
// enough to check which apps confirmed a logout, short enough that the
// listing of a long-lived account stays small.
const DefaultRecentlyRevoked = 7 * 24 * time.Hour

// Account is a user as an administrator sees it.
type Account struct {
	users.User
	// MFAEnabled is nil when the Service has no MFA to ask: a confirmed
	// TOTP, or a passkey.
	MFAEnabled *bool `json:"mfa_enabled,omitempty"`
	// Passkeys counts the user's passkeys; nil without Keys.
	Passkeys *int `json:"passkeys,omitempty"`
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// FindUser finds an account by email, ignoring case. users.ErrNotFound
// when there is none.
func (s *Service) FindUser(ctx context.Context, email string) (Account, error) {
	u, err := s.Users.ByEmail(ctx, email)
	if err != nil {
		return Account{}, err
	}
	return s.account(ctx, u)
}

// User finds an account by id; a malformed id is users.ErrNotFound.
func (s *Service) User(ctx context.Context, id string) (Account, error) {
	u, err := s.Users.ByID(ctx, id)
	if err != nil {
		return Account{}, err
	}
	return s.account(ctx, u)
}

func (s *Service) account(ctx context.Context, u users.User) (Account, error) {
	a := Account{User: u}
	if s.Keys != nil {
		list, err := s.Keys.List(ctx, u.ID)
		if err != nil {
			return Account{}, fmt.Errorf("admin: user: %w", err)
		}
		n := len(list)
		a.Passkeys = &n
	}
	if s.MFA != nil {
		on, err := s.MFA.Enabled(ctx, u.ID)
		if err != nil {
			return Account{}, fmt.Errorf("admin: user: %w", err)
		}
		on = on || (a.Passkeys != nil && *a.Passkeys > 0)
		a.MFAEnabled = &on
	}
	return a, nil
}

// RevokeSessions ends all of the user's sessions and every token they hold,
// offline ones included, and queues a logout notification for each app
// that asked for one. Revoking again finds nothing and returns zeros.
func (s *Service) RevokeSessions(ctx context.Context, userID, actor string) (sessions.Result, error) {
	// Checked first so an unknown user is a 404, not an audited no-op.
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return sessions.Result{}, err
	}
	return s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: actor})
}

// Disable disables the account and ends its sessions and tokens, in one
// transaction: no moment exists in which the account is disabled but a
// session of it still works. Disabling a disabled account keeps the
// original time and ends whatever is left.
func (s *Service) Disable(ctx context.Context, userID, actor string) (users.User, sessions.Result, error) {
	var (
		u   users.User
		res sessions.Result
	)
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if err := s.Users.SetDisabled(ctx, userID, true); err != nil {
			return err
		}
		var err error
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonUserDisabled,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		if err := s.audit(ctx, tx, actor, "users.disable", userID, nil); err != nil {
			return err
		}
		u, err = s.Users.ByID(ctx, userID)
		return err
	})
	if err != nil {
		return users.User{}, sessions.Result{}, wrap("disable", err)
	}
	return u, res, nil
}

// CreateUser creates an account and records it in the audit log, in one
// transaction. The password is checked against the policy (and hashed)
// first: users.PolicyError, users.ErrInvalidEmail, users.ErrInvalidName and
// users.ErrEmailTaken
// say what was wrong, and nothing is stored.
func (s *Service) CreateUser(ctx context.Context, nu users.NewUser, actor string) (Account, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		var err error
		if u, err = s.Users.Create(ctx, nu); err != nil {
			return err
		}
		// No email or name: the audit log holds ids only, so deleting an
		// account leaves nothing personal of it behind.
		return s.audit(ctx, tx, actor, "users.create", u.ID,
			map[string]bool{"admin": u.IsAdmin, "temporary_password": nu.MustChangePassword})
	})
	if err != nil {
		if errors.Is(err, users.ErrEmailTaken) || errors.Is(err, users.ErrInvalidEmail) || errors.Is(err, users.ErrInvalidName) ||
			errors.Is(err, users.ErrWeakPassword) {
			return Account{}, err
		}
		return Account{}, wrap("create user", err)
	}
	return s.account(ctx, u)
}

// ErrOwnAccount refuses an administrator's deleting their own account: the
// session doing it would end with it, and with it perhaps the last way in.
var ErrOwnAccount = errors.New("admin: an administrator cannot delete their own account")

// DeleteUser deletes the account, in one transaction with the end of its
// sessions and tokens (reason user_deleted; every app that holds a session
// is told, as the outbox outlives the account) and the audit record. What
// was stored under the account goes with it (users.Store.Delete); the
// audit log keeps only its id.
func (s *Service) DeleteUser(ctx context.Context, userID, actor string) (sessions.Result, error) {
	if actor == audit.Admin(userID) {
		return sessions.Result{}, ErrOwnAccount
	}
	var res sessions.Result
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if _, err := s.Users.ByID(ctx, userID); err != nil {
			return err
		}
		var err error
		res, err = s.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID, Reason: sessions.ReasonUserDeleted,
			IncludeOffline: true, Actor: actor})
		if err != nil {
			return err
		}
		if err := s.audit(ctx, tx, actor, "users.delete", userID, nil); err != nil {
			return err
		}
		return s.Users.Delete(ctx, userID)
	})
	if err != nil {
		return sessions.Result{}, wrap("delete user", err)
	}
	return res, nil
}

// Enable lets a disabled account sign in again. Its old sessions stay
// ended.
func (s *Service) Enable(ctx context.Context, userID, actor string) (users.User, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if err := s.Users.SetDisabled(ctx, userID, false); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, actor, "users.enable", userID, nil); err != nil {
			return err
		}
		var err error
		u, err = s.Users.ByID(ctx, userID)
		return err
	})
	if err != nil {
		return users.User{}, wrap("enable", err)
	}
	return u, nil
}

// RetryNotification makes an undelivered logout notification due now, even
// one that failed or was abandoned. outbox.ErrNotFound when id names
// no undelivered notification (a malformed id included).
func (s *Service) RetryNotification(ctx context.Context, id, actor string) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return outbox.ErrNotFound
	}
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if err := outbox.Retry(ctx, s.Pool, n); err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "outbox.retry", "outbox:"+strconv.FormatInt(n, 10), nil)
	})
	return wrap("retry notification", err)
}

// audit records an administrative action in the caller's transaction.
func (s *Service) audit(ctx context.Context, q db.Querier, actor, action, target string, details any) error {
	if err := audit.Record(ctx, s.now(), actor, action, target, details); err != nil {
		return err
	}
	for _, hook := range s.OnChange {
		if err := hook(ctx, target, action, details); err != nil {
			return err
		}
	}
	return nil
}

// wrap adds context to unexpected errors; the sentinels callers map to a
// status pass through unwrapped so their messages stay short.
func wrap(op string, err error) error {
	var invalid *ssf.InvalidError
	if err == nil || errors.Is(err, users.ErrNotFound) || errors.Is(err, outbox.ErrNotFound) ||
		errors.Is(err, ssf.ErrNotFound) || errors.Is(err, ssf.ErrNotEnabled) || errors.As(err, &invalid) {
		return err
	}
	return fmt.Errorf("admin: %s: %w", op, err)
}
