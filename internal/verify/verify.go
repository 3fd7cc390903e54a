// Package verify owns verified addresses: the link mailed to prove that an
// account's address reaches its owner (an account an administrator made,
// a change of address asked for on /account), confirming it, and the
// account's email_verified_at that ID tokens and userinfo read.
//
// A link's token is hashed at rest (mail.NewLinkToken), works once, for
// LinkLifetime, and only while the account's address is still the one it
// was mailed about. Opening a link changes nothing (mail scanners fetch
// links); the page's Confirm button does (Handler).
//
// A change of address takes effect only when the link mailed to the new
// address is confirmed; the old address is then told. Asking for an
// address another account has gives the same answer as any other and
// changes nothing, so the form says nothing about who has an account.
//
// Self-registration (Signups, IDP_SELF_SIGNUP) is here too: it is a
// verification link whose confirmation makes the account.
package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/users"
)

// LinkLifetime is how long a verification link works: a week, since an
// account an administrator makes may wait for its owner's first day.
const LinkLifetime = 7 * 24 * time.Hour

// LinkPath is where a verification link leads (GET shows a page, POST
// confirms).
const LinkPath = "/email/verify"

// Audit actions.
const (
	ActionChangeRequested = "users.email_change_requested"
	ActionVerified        = "users.email_verified"
	ActionChanged         = "users.email_changed"
)

var (
	// ErrUnknownLink: no link has this token (mistyped, tampered, cleaned
	// up, or its account disabled).
	ErrUnknownLink = errors.New("verify: unknown link")
	ErrUsedLink    = errors.New("verify: link already used")
	ErrExpiredLink = errors.New("verify: link expired")
	// ErrStaleLink: the account's address changed after the link was
	// mailed.
	ErrStaleLink = errors.New("verify: the account's address changed since the link was sent")
	// ErrTaken: another account has the new address by now.
	ErrTaken = errors.New("verify: the address belongs to another account")
	// ErrSameEmail: the new address is the account's own.
	ErrSameEmail = errors.New("verify: that is already the account's address")
)

// Service mails and confirms verification links.
type Service struct {
	Pool   *pgxpool.Pool
	Mailer *mail.Mailer
	Now    func() time.Time
}

// Link is what a working link is about.
type Link struct {
	UserID string
	// Email is the address the link proves.
	Email string
	// Change: confirming it moves the account to Email.
	Change bool
}

// Queue mails the account's current address a link to verify it, in the
// unit of work in ctx: the link exists and its mail is sent if and only if
// the change that asks for it (the account's creation) commits.
func (s *Service) Queue(ctx context.Context, userID string) error {
	q := db.Conn(ctx, s.Pool)
	var email, name string
	if err := q.QueryRow(ctx, `SELECT email, name FROM users WHERE id = $1`, userID).Scan(&email, &name); err != nil {
		return fmt.Errorf("verify: queue: %w", err)
	}
	return s.queueLink(ctx, userID, email, "", name, mail.KindVerifyEmail)
}

func (s *Service) queueLink(ctx context.Context, userID, email, oldEmail, name, kind string) error {
	now := s.Now()
	token, hash := mail.NewLinkToken()
	var old *string
	if oldEmail != "" {
		old = &oldEmail
	}
	if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		INSERT INTO email_verifications (token_hash, user_id, email, old_email, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, hash, userID, email, old, now, now.Add(LinkLifetime)); err != nil {
		return fmt.Errorf("verify: store link: %w", err)
	}
	return s.Mailer.Queue(ctx, userID, mail.Action{Kind: kind, To: email, Name: name, Path: LinkPath, Token: token,
		Expires: LinkLifetime})
}

// OnAdminChange is an admin.Service hook: an account an administrator
// creates (console, API or CLI) gets its verification mail in the
// transaction that creates it.
func (s *Service) OnAdminChange(ctx context.Context, target, action string, _ any) error {
	if action != "users.create" {
		return nil
	}
	return s.Queue(ctx, target)
}

// RequestChange asks to move the account to newEmail: a link is mailed to
// newEmail, and nothing else changes until it is confirmed. When another
// account has newEmail, nothing is mailed or stored but the audit record,
// and the answer is the same (nil). Errors the person can act on:
// users.ErrInvalidEmail, ErrSameEmail.
func (s *Service) RequestChange(ctx context.Context, userID, newEmail string) error {
	newEmail, err := users.NormalizeEmail(newEmail)
	if err != nil {
		return err
	}
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		q := db.Conn(ctx, s.Pool)
		var current, name string
		var taken bool
		if err := q.QueryRow(ctx, `
			SELECT u.email, u.name, EXISTS (SELECT 1 FROM users o WHERE lower(o.email) = lower($2) AND o.id <> u.id)
			FROM users u WHERE u.id = $1 FOR UPDATE`, userID, newEmail).Scan(&current, &name, &taken); err != nil {
			return err
		}
		if strings.EqualFold(current, newEmail) {
			return ErrSameEmail
		}
		// The address is in neither the audit log (ids only) nor the
		// answer; whether it was taken is not recorded either, since an
		// administrator reading the log could tell.
		if err := audit.Record(ctx, s.Now(), audit.User(userID), ActionChangeRequested, userID, nil); err != nil {
			return err
		}
		if taken {
			return nil
		}
		return s.queueLink(ctx, userID, newEmail, current, name, mail.KindConfirmEmailChange)
	})
	if err != nil && !errors.Is(err, ErrSameEmail) {
		return fmt.Errorf("verify: request change: %w", err)
	}
	return err
}

// Check reports what token's link is about if it works now, without using
// it (the page a link opens, which mail scanners fetch too).
func (s *Service) Check(ctx context.Context, token string) (Link, error) {
	l, _, _, err := s.find(ctx, token, false)
	return l, err
}

// Confirm uses the link: the address is verified and, for a change, the
// account moves to it and the old address is told by mail — all in one
// transaction, and the link works no more.
func (s *Service) Confirm(ctx context.Context, token string) (Link, error) {
	var l Link
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		var old, name string
		var err error
		if l, old, name, err = s.find(ctx, token, true); err != nil {
			return err
		}
		q := db.Conn(ctx, s.Pool)
		now := s.Now()
		if _, err := q.Exec(ctx, `UPDATE email_verifications SET used_at = $2 WHERE token_hash = $1`,
			mail.HashToken(token), now); err != nil {
			return err
		}
		if !l.Change {
			if _, err := q.Exec(ctx, `UPDATE users SET email_verified_at = $2 WHERE id = $1`, l.UserID, now); err != nil {
				return err
			}
			return audit.Record(ctx, now, audit.User(l.UserID), ActionVerified, l.UserID, nil)
		}
		var taken bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2)`,
			l.Email, l.UserID).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return ErrTaken
		}
		if _, err := q.Exec(ctx, `UPDATE users SET email = $2, email_verified_at = $3, updated_at = $3 WHERE id = $1`,
			l.UserID, l.Email, now); err != nil {
			return err
		}
		if err := audit.Record(ctx, now, audit.User(l.UserID), ActionChanged, l.UserID, nil); err != nil {
			return err
		}
		// The old address is told, with a link to the account page and no
		// token: someone who took the account learns nothing from it, and
		// its owner learns at once.
		return s.Mailer.Queue(ctx, l.UserID, mail.Action{Kind: mail.KindEmailChanged, To: old, Name: name, Path: "/account"})
	})
	if db.IsUniqueViolation(err) {
		err = ErrTaken // taken between the check and the update
	}
	if err != nil && !isLinkError(err) {
		return Link{}, fmt.Errorf("verify: confirm: %w", err)
	}
	return l, err
}

func isLinkError(err error) bool {
	for _, e := range []error{ErrUnknownLink, ErrUsedLink, ErrExpiredLink, ErrStaleLink, ErrTaken} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// find looks the link up (locking it and its account when lock) and judges
// it. old is the address a change moves from; name the account's.
func (s *Service) find(ctx context.Context, token string, lock bool) (l Link, old, name string, err error) {
	if token == "" || len(token) > 128 {
		return Link{}, "", "", ErrUnknownLink
	}
	q := `SELECT v.user_id::text, v.email, coalesce(v.old_email, ''), v.old_email IS NOT NULL, v.expires_at, v.used_at,
			u.email, u.name, u.disabled_at IS NOT NULL
		FROM email_verifications v JOIN users u ON u.id = v.user_id
		WHERE v.token_hash = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	var current string
	var expires time.Time
	var used *time.Time
	var disabled bool
	err = db.Conn(ctx, s.Pool).QueryRow(ctx, q, mail.HashToken(token)).
		Scan(&l.UserID, &l.Email, &old, &l.Change, &expires, &used, &current, &name, &disabled)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Link{}, "", "", ErrUnknownLink
	case err != nil:
		return Link{}, "", "", fmt.Errorf("verify: find link: %w", err)
	case used != nil:
		return Link{}, "", "", ErrUsedLink
	case !s.Now().Before(expires):
		return Link{}, "", "", ErrExpiredLink
	case disabled:
		return Link{}, "", "", ErrUnknownLink
	case !l.Change && !strings.EqualFold(current, l.Email), l.Change && !strings.EqualFold(current, old):
		return Link{}, "", "", ErrStaleLink
	}
	return l, old, name, nil
}

// Sweeps are the janitor's for the links: a day past expiry, used or not
// (kept that long so a late click says "expired", not "unknown").
var Sweeps = []db.Sweep{
	{Table: "email_verifications", Key: "token_hash", Due: "expires_at < $1", Keep: 24 * time.Hour},
}
