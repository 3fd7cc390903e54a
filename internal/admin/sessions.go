package admin

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// Session is an SSO session as an administrator sees it: when and from
// where it started, the apps that hold a session under its sid and, once it
// has ended, whether each app confirmed the logout.
type Session struct {
	SID               string     `json:"sid"`
	CreatedAt         time.Time  `json:"created_at"`
	LastSeenAt        time.Time  `json:"last_seen_at"`
	IdleExpiresAt     time.Time  `json:"idle_expires_at"`
	AbsoluteExpiresAt time.Time  `json:"absolute_expires_at"`
	AuthTime          time.Time  `json:"auth_time"`
	AMR               []string   `json:"amr"`
	ACR               string     `json:"acr"`
	UserAgent         string     `json:"user_agent"`
	IP                string     `json:"ip"`
	RevokedAt         *time.Time `json:"revoked_at,omitempty"`
	RevokedReason     string     `json:"revoked_reason,omitempty"`
	Apps              []App      `json:"apps"`
}

// App is one app's part in a session.
type App struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
	// SignedInAt is when the app joined the session; nil for an app known
	// only from a notification, because its client has since been deleted.
	SignedInAt *time.Time `json:"signed_in_at,omitempty"`
	// BackchannelLogout: the app asked to be told when the session ends.
	BackchannelLogout bool           `json:"backchannel_logout"`
	Notifications     []Notification `json:"notifications"`
}

// Notification states.
const (
	StatePending   = "pending"   // queued or being retried
	StateDelivered = "delivered" // the app answered 200 or 204
	StateFailed    = "failed"    // the app refused it; not retried
	StateAbandoned = "abandoned" // unreachable for too long; not retried
)

// Notification is one back-channel logout notification (an outbox
// row). Its ID is what POST /admin/api/outbox/{id}/retry takes.
type Notification struct {
	ID            int64      `json:"id"`
	State         string     `json:"state"`
	Reason        string     `json:"reason"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"` // while pending
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	FailedAt      *time.Time `json:"failed_at,omitempty"`
	AbandonedAt   *time.Time `json:"abandoned_at,omitempty"`
}

// SessionList is a user's sessions, newest first.
type SessionList struct {
	UserID   string    `json:"user_id"`
	Sessions []Session `json:"sessions"`
}

// ListOptions say which sessions a listing holds besides the live ones.
type ListOptions struct {
	// Revoked adds the sessions revoked in the last RecentlyRevoked, with
	// their notifications: how an administrator sees which apps confirmed a
	// logout.
	Revoked bool
}

// maxRevoked bounds the revoked sessions in one listing.
const maxRevoked = 100

// ListSessions lists the user's live sessions (and, if asked, recently revoked
// ones) with their apps and each app's logout notifications, in two
// queries whatever the number of sessions. users.ErrNotFound for an
// unknown user.
func (s *Service) ListSessions(ctx context.Context, userID string, opt ListOptions) (SessionList, error) {
	if _, err := s.Users.ByID(ctx, userID); err != nil {
		return SessionList{}, err
	}
	window := s.RecentlyRevoked
	if window <= 0 {
		window = DefaultRecentlyRevoked
	}
	now := s.now()
	q := db.Conn(ctx, s.Pool)
	// One row per (session, app); a session without apps has one row with
	// NULL app columns. "Live" is what sessions.Manager.ListByUser means.
	rows, err := q.Query(ctx, `
		WITH picked AS (
			(SELECT id FROM sso_sessions
			 WHERE user_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND absolute_expires_at > $2)
			UNION ALL
			(SELECT id FROM sso_sessions
			 WHERE $3 AND user_id = $1 AND revoked_at >= $4
			 ORDER BY revoked_at DESC LIMIT $5)
		)
		SELECT s.id::text, s.created_at, s.last_seen_at, s.idle_expires_at, s.absolute_expires_at, s.auth_time,
			s.amr, s.acr, s.user_agent, s.ip, s.revoked_at, coalesce(s.revoked_reason, ''),
			cs.client_id, coalesce(c.name, ''), cs.created_at, coalesce(c.backchannel_logout_uri <> '', false)
		FROM picked JOIN sso_sessions s ON s.id = picked.id
		LEFT JOIN client_sessions cs ON cs.sid = s.id
		LEFT JOIN oauth_clients c ON c.id = cs.client_id
		ORDER BY s.created_at DESC, s.id, cs.created_at, cs.client_id`,
		userID, now, opt.Revoked, now.Add(-window), maxRevoked)
	if err != nil {
		return SessionList{}, fmt.Errorf("admin: sessions: %w", err)
	}
	defer rows.Close()
	list := SessionList{UserID: userID, Sessions: []Session{}}
	index := map[string]int{} // sid → position in list.Sessions
	for rows.Next() {
		var (
			ss         Session
			clientID   *string
			name       string
			signedInAt *time.Time
			bcl        bool
		)
		if err := rows.Scan(&ss.SID, &ss.CreatedAt, &ss.LastSeenAt, &ss.IdleExpiresAt, &ss.AbsoluteExpiresAt,
			&ss.AuthTime, &ss.AMR, &ss.ACR, &ss.UserAgent, &ss.IP, &ss.RevokedAt, &ss.RevokedReason,
			&clientID, &name, &signedInAt, &bcl); err != nil {
			return SessionList{}, fmt.Errorf("admin: sessions: %w", err)
		}
		i, ok := index[ss.SID]
		if !ok {
			ss.Apps = []App{}
			i = len(list.Sessions)
			index[ss.SID] = i
			list.Sessions = append(list.Sessions, ss)
		}
		if clientID != nil {
			list.Sessions[i].Apps = append(list.Sessions[i].Apps, App{ClientID: *clientID, Name: name,
				SignedInAt: signedInAt, BackchannelLogout: bcl, Notifications: []Notification{}})
		}
	}
	if err := rows.Err(); err != nil {
		return SessionList{}, fmt.Errorf("admin: sessions: %w", err)
	}
	if len(list.Sessions) == 0 {
		return list, nil
	}
	if err := s.attachNotifications(ctx, q, list.Sessions, index); err != nil {
		return SessionList{}, err
	}
	return list, nil
}

// attachNotifications adds the logout notifications of sessions to their
// apps, in one query. A notification whose client was deleted since (its
// client session went with it) gets an app entry of its own, so no
// notification is hidden.
func (s *Service) attachNotifications(ctx context.Context, q db.Querier, list []Session, index map[string]int) error {
	sids := make([]string, len(list))
	for i, ss := range list {
		sids[i] = ss.SID
	}
	rows, err := q.Query(ctx, `
		SELECT o.id, o.sid::text, o.client_id, coalesce(c.name, ''), o.reason, o.attempts, o.last_error,
			o.created_at, o.next_attempt_at, o.delivered_at, o.failed_at, o.abandoned_at
		FROM outbox o LEFT JOIN oauth_clients c ON c.id = o.client_id
		WHERE o.kind = $2 AND o.sid = ANY($1::uuid[])
		ORDER BY o.id`, sids, sessions.LogoutKind)
	if err != nil {
		return fmt.Errorf("admin: notifications: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			n             Notification
			sid, clientID string
			name          string
			nextAttemptAt time.Time
		)
		if err := rows.Scan(&n.ID, &sid, &clientID, &name, &n.Reason, &n.Attempts, &n.LastError,
			&n.CreatedAt, &nextAttemptAt, &n.DeliveredAt, &n.FailedAt, &n.AbandonedAt); err != nil {
			return fmt.Errorf("admin: notifications: %w", err)
		}
		switch {
		case n.DeliveredAt != nil:
			n.State = StateDelivered
		case n.FailedAt != nil:
			n.State = StateFailed
		case n.AbandonedAt != nil:
			n.State = StateAbandoned
		default:
			n.State = StatePending
			n.NextAttemptAt = &nextAttemptAt
		}
		ss := &list[index[sid]]
		j := slices.IndexFunc(ss.Apps, func(a App) bool { return a.ClientID == clientID })
		if j < 0 {
			ss.Apps = append(ss.Apps, App{ClientID: clientID, Name: name, BackchannelLogout: true})
			j = len(ss.Apps) - 1
		}
		ss.Apps[j].Notifications = append(ss.Apps[j].Notifications, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("admin: notifications: %w", err)
	}
	return nil
}
