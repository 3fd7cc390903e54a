package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/outbox"
)

// Reasons a session ends; recorded on the row, in the outbox and the audit log.
const (
	ReasonLogout          = "rp_logout"         // RP-initiated logout
	ReasonUserSignOut     = "user_sign_out"     // the user ended one session on /account
	ReasonUserSignOutAll  = "user_sign_out_all" // the user's "sign out everywhere"
	ReasonAdminRevoke     = "admin_revoke"      // an administrator's revoke-all
	ReasonExpired         = "expired"           // idle or absolute timeout
	ReasonUserDisabled    = "user_disabled"
	ReasonUserDeleted     = "user_deleted"
	ReasonPasswordChanged = "password_changed"
	ReasonFactorsChanged  = "factors_changed" // 2FA enrolled, disabled or reset
	// ReasonSignalReceived: a trusted Shared Signals transmitter said the
	// person's session, credential, account or device is no longer to be
	// trusted (package ssf/receiver).
	ReasonSignalReceived = "signal_received"
	ReasonUserReported   = "user_reported" // the owner answered an alert "This wasn't me" (package alerts)
)

// LogoutKind is the outbox kind of the back-channel logout notifications
// Revoke queues (package backchannel delivers them). The row's payload
// holds the app's signing alg: {"alg": "RS256"}.
const LogoutKind = "logout"

// Ended is what one revocation ended, as the Manager's OnRevoke hooks see
// it.
type Ended struct {
	Sessions []EndedSession
	Reason   string
	At       time.Time
}

// EndedSession is one session a revocation ended.
type EndedSession struct {
	SID    string
	UserID string
}

// Revocation says which sessions end and why.
type Revocation struct {
	// SIDs ends these sessions; with UserID set too, only those of them
	// that belong to that user. With SIDs empty, all of UserID's sessions.
	SIDs   []string
	UserID string
	// ExceptSID keeps one session alive (the one in which the user just
	// changed their factors).
	ExceptSID string
	Reason    string
	// IncludeOffline also revokes the user's offline_access refresh tokens,
	// which otherwise outlive a sign-out by design. Requires UserID.
	IncludeOffline bool
	// Actor is recorded in the audit log ("user:<id>", "admin:<id>", "system").
	Actor string
}

// Result counts what a revocation ended.
type Result struct {
	Sessions      int `json:"sessions"`
	AccessTokens  int `json:"access_tokens"`
	RefreshTokens int `json:"refresh_tokens"`
	Notifications int `json:"notifications"`
}

// Revoke is the one path through which sessions end. In one transaction it
// marks the sessions revoked, kills their access and refresh tokens and
// pending codes, queues one back-channel logout notification per app that
// held a session and asked to be told (and whatever the OnRevoke hooks
// queue), and writes an audit record. Delivery
// happens later, from the outbox, so a slow app never delays the caller and
// a restart loses nothing. Revoking an already-ended session is a no-op.
func (m *Manager) Revoke(ctx context.Context, rev Revocation) (Result, error) {
	if len(rev.SIDs) == 0 && rev.UserID == "" {
		return Result{}, fmt.Errorf("sessions: revoke: no sessions named")
	}
	// Ids arrive from URLs and forms: a malformed one names no session.
	// Parsing here lets every statement compare uuid to uuid and use its
	// index.
	named := validUUIDs(rev.SIDs)
	if (len(rev.SIDs) > 0 && len(named) == 0) || (rev.UserID != "" && !isUUID(rev.UserID)) {
		return Result{}, nil
	}
	// The session filter: by sid (optionally checked against the user) or
	// by user; args grow with it so each statement names only what it uses.
	args := []any{m.Now(), rev.Reason}
	where := ""
	if len(named) > 0 {
		args = append(args, named)
		where = fmt.Sprintf("id = ANY($%d::uuid[])", len(args))
	}
	if rev.UserID != "" {
		args = append(args, rev.UserID)
		if where != "" {
			where += " AND "
		}
		where += fmt.Sprintf("user_id = $%d::uuid", len(args))
	}
	if isUUID(rev.ExceptSID) {
		args = append(args, rev.ExceptSID)
		where += fmt.Sprintf(" AND id <> $%d::uuid", len(args))
	}
	// A revocation that loses a deadlock (another transaction took the same
	// rows in another order) is run again: it must not leave tokens alive
	// because something else was busy. Inside a caller's transaction the
	// caller decides.
	_, joined := db.From(ctx)
	var res Result
	var err error
	for attempt := 1; ; attempt++ {
		res, err = m.revoke(ctx, rev, where, args)
		if joined || attempt == 3 || !db.IsSerializationFailure(err) {
			break
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("sessions: revoke: %w", err)
	}
	return res, nil
}

// revoke is one try of Revoke. Locks are taken in the order every writer of
// these tables takes them: the account (only to end offline grants too),
// sessions, codes, refresh tokens, access tokens. Token issuance locks the
// session (FOR SHARE, see liveSQL) before it writes tokens, and an offline
// grant's refresh locks the account, so issuance either commits first and
// its tokens are revoked here, or waits and then finds the session ended.
func (m *Manager) revoke(ctx context.Context, rev Revocation, where string, args []any) (Result, error) {
	var res Result
	err := db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		now := args[0].(time.Time)
		offlineUser := ""
		if rev.IncludeOffline {
			offlineUser = rev.UserID
			u.Queue(`SELECT 1 FROM users WHERE id = $1::uuid FOR NO KEY UPDATE`, rev.UserID)
		}
		rows, err := u.Query(ctx, `
			UPDATE sso_sessions SET revoked_at = $1, revoked_reason = $2
			WHERE revoked_at IS NULL AND `+where+`
			RETURNING id::text, user_id::text`, args...)
		if err != nil {
			return err
		}
		ended, err := pgx.CollectRows(rows, pgx.RowToStructByPos[EndedSession])
		if err != nil {
			return err
		}
		sids := make([]string, len(ended))
		for i, e := range ended {
			sids[i] = e.SID
		}
		res.Sessions = len(sids)
		except := nullUUID(rev.ExceptSID)

		u.Queue(`UPDATE oauth_authorize_codes SET active = false WHERE active AND sid = ANY($1::uuid[])`, sids)
		// With IncludeOffline every token of the user goes, except those of
		// the session being kept.
		u.Queue(`UPDATE oauth_refresh_tokens SET active = false
			WHERE active AND ((sid = ANY($1::uuid[]) AND NOT offline)
				OR ($2 <> '' AND subject = $2 AND ($3::uuid IS NULL OR sid IS NULL OR sid <> $3::uuid)))`,
			sids, offlineUser, except).Tag(func(ct pgconn.CommandTag) error { res.RefreshTokens = int(ct.RowsAffected()); return nil })
		u.Queue(`DELETE FROM oauth_access_tokens WHERE sid = ANY($1::uuid[])
			OR ($2 <> '' AND subject = $2 AND ($3::uuid IS NULL OR sid IS NULL OR sid <> $3::uuid))`,
			sids, offlineUser, except).Tag(func(ct pgconn.CommandTag) error { res.AccessTokens = int(ct.RowsAffected()); return nil })
		var logouts []outbox.Message
		u.Queue(`
			SELECT cs.sid::text, s.user_id::text, c.id, c.backchannel_logout_uri, c.id_token_signed_response_alg
			FROM client_sessions cs
			JOIN oauth_clients c ON c.id = cs.client_id
			JOIN sso_sessions s ON s.id = cs.sid
			WHERE cs.sid = ANY($1::uuid[]) AND c.backchannel_logout_uri <> ''
			ORDER BY cs.sid, c.id`, sids).Rows(func(rows pgx.Rows) error {
			var sid, subject, clientID, uri, alg string
			_, err := pgx.ForEachRow(rows, []any{&sid, &subject, &clientID, &uri, &alg}, func() error {
				logouts = append(logouts, outbox.Message{Kind: LogoutKind, SID: sid, Subject: subject, ClientID: clientID,
					URI: uri, Reason: rev.Reason, Payload: map[string]string{"alg": alg}})
				return nil
			})
			return err
		})
		if err := u.Send(ctx); err != nil {
			return err
		}
		// The rows go out with the audit record, at the commit; the
		// outbox's trigger wakes the workers then.
		res.Notifications = len(logouts)
		if err := outbox.Queue(ctx, m.Pool, now, logouts...); err != nil {
			return err
		}
		if len(ended) > 0 {
			for _, hook := range m.OnRevoke {
				if err := hook(ctx, Ended{Sessions: ended, Reason: rev.Reason, At: now}); err != nil {
					return err
				}
			}
		}
		if len(rev.SIDs) > 0 && res == (Result{}) {
			// The sessions named were not live (ended already, or not the
			// user's): a no-op, which leaves no audit record either; a
			// refused sign-out must store nothing (found by fuzzing).
			return nil
		}
		details := struct {
			Reason string   `json:"reason"`
			SIDs   []string `json:"sids"`
			Result
		}{rev.Reason, sids, res}
		target := rev.UserID
		if target == "" && len(sids) > 0 {
			target = "sid:" + sids[0]
		}
		actor := rev.Actor
		if actor == "" {
			actor = audit.System
		}
		return audit.Record(ctx, now, actor, "sessions.revoke", target, details)
	})
	return res, err
}

// FactorsChanged follows a person's change of a sign-in factor (action,
// e.g. audit.ActionChangePassword): in one transaction (or the one in ctx,
// so it joins the change itself) it ends their sessions but exceptSID, with
// every token, offline ones too, since whoever held one signed in under the
// old factors, and records the change after the revocation it caused.
func (m *Manager) FactorsChanged(ctx context.Context, userID, exceptSID, action string) error {
	return db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		actor := audit.User(userID)
		if _, err := m.Revoke(ctx, Revocation{UserID: userID, ExceptSID: exceptSID, Reason: ReasonFactorsChanged,
			IncludeOffline: true, Actor: actor}); err != nil {
			return err
		}
		for _, hook := range m.OnFactorsChanged {
			if err := hook(ctx, userID, action); err != nil {
				return err
			}
		}
		return audit.Record(ctx, m.Now(), actor, action, userID, nil)
	})
}

// ExpireDue ends, through Revoke, up to limit sessions whose idle or
// absolute timeout has passed, so their apps are told like any other
// logout. Safe on every instance at once: each batch claims its rows.
func (m *Manager) ExpireDue(ctx context.Context, limit int) (Result, error) {
	var res Result
	err := db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		rows, err := db.Conn(ctx, m.Pool).Query(ctx, `
			SELECT id::text FROM sso_sessions
			WHERE revoked_at IS NULL AND least(idle_expires_at, absolute_expires_at) <= $1
			ORDER BY least(idle_expires_at, absolute_expires_at)
			LIMIT $2 FOR UPDATE SKIP LOCKED`, m.Now(), limit)
		if err != nil {
			return err
		}
		sids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(sids) == 0 {
			return err
		}
		res, err = m.Revoke(ctx, Revocation{SIDs: sids, Reason: ReasonExpired, Actor: "system"})
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("sessions: expire: %w", err)
	}
	return res, nil
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

func validUUIDs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if isUUID(id) {
			out = append(out, id)
		}
	}
	return out
}
