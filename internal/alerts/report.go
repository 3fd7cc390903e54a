package alerts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/sessions"
)

var (
	// ErrUnknownLink: no link has this token (mistyped, tampered, or
	// swept long after it expired), or its account is disabled.
	ErrUnknownLink = errors.New("alerts: unknown link")
	ErrUsedLink    = errors.New("alerts: link already used")
	ErrExpiredLink = errors.New("alerts: link expired")
)

// Link is a "This wasn't me" link that works.
type Link struct {
	UserID string
	Event  string
	// SID is the one session it ends; "" ends them all.
	SID string
}

// Check judges token without using it (the page the link opens, which
// mail scanners fetch too).
func (s *Service) Check(ctx context.Context, token string) (Link, error) {
	return s.find(ctx, token, false)
}

// Report uses the link: in one transaction it spends it, ends the
// session it names, or every session of the account with all their
// tokens for a change, through the one revocation path (every app is
// told over the back channel), and records the report in the audit log.
func (s *Service) Report(ctx context.Context, token string) (Link, sessions.Result, error) {
	var l Link
	var res sessions.Result
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		var err error
		if l, err = s.find(ctx, token, true); err != nil {
			return err
		}
		now := s.Now()
		if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `UPDATE alert_links SET used_at = $2 WHERE token_hash = $1`,
			mail.HashToken(token), now); err != nil {
			return err
		}
		actor := audit.User(l.UserID)
		rev := sessions.Revocation{UserID: l.UserID, Reason: ReasonUserReported, Actor: actor, IncludeOffline: true}
		if l.SID != "" {
			rev.SIDs, rev.IncludeOffline = []string{l.SID}, false
		}
		if res, err = s.Sessions.Revoke(ctx, rev); err != nil {
			return err
		}
		return audit.Record(ctx, now, actor, ActionReported, l.UserID, map[string]any{"event": l.Event, "sid": l.SID,
			"sessions": res.Sessions})
	})
	if err != nil {
		return Link{}, sessions.Result{}, err
	}
	return l, res, nil
}

func (s *Service) find(ctx context.Context, token string, lock bool) (Link, error) {
	if token == "" || len(token) > 128 {
		return Link{}, ErrUnknownLink
	}
	q := `SELECT l.user_id::text, l.event, coalesce(l.sid::text, ''), l.expires_at, l.used_at, u.disabled_at IS NOT NULL
		FROM alert_links l JOIN users u ON u.id = l.user_id WHERE l.token_hash = $1`
	if lock {
		q += ` FOR UPDATE OF l`
	}
	var l Link
	var expires time.Time
	var used *time.Time
	var disabled bool
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, q, mail.HashToken(token)).Scan(&l.UserID, &l.Event, &l.SID, &expires, &used, &disabled)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Link{}, ErrUnknownLink
	case err != nil:
		return Link{}, fmt.Errorf("alerts: find link: %w", err)
	case used != nil:
		return Link{}, ErrUsedLink
	case !s.Now().Before(expires):
		return Link{}, ErrExpiredLink
	case disabled:
		return Link{}, ErrUnknownLink
	}
	return l, nil
}

// csrf is the report form's anti-forgery token: an HMAC of the browser's
// device cookie (which the page sets when there is none), so no session
// is needed and another site cannot compute it. The key is the sessions'
// CSRF key under a label of its own.
// csrfPurpose binds the report form's token to the device cookie
// (sessions.BoundCSRFToken): the page needs no sign-in.
const csrfPurpose = "alerts-report"
