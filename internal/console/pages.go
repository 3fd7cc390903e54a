package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/device"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// listLimit bounds the users the front page lists.
const listLimit = 25

// homeData is the console's front page: the search form and a list of
// users (the newest, or those whose email contains what was searched).
type homeData struct {
	Email   string // what was searched
	Notice  string
	Error   string
	Heading string
	Users   []userRow
	// New is what the create form was last sent with, to fill it again
	// after a refusal (never the password).
	New struct {
		Email, Name string
		Admin       bool
	}
	// NeedCode: the administrator's last second factor is older than
	// FreshFactor, so creating an administrator asks for a code.
	NeedCode bool
}

type userRow struct {
	ID, Email, Name string
	Admin, Disabled bool
	Created         string
	CreatedISO      string
}

// home is GET /admin. A search for an exact email goes straight to that
// user; otherwise the page lists the users whose email contains the text.
// A search changes nothing, so it is a GET form (bookmarkable, no CSRF
// token); the access log records neither paths nor queries.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administrator(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	q := strings.TrimSpace(r.URL.Query().Get("email"))
	d := homeData{Email: q, Heading: "Newest users", Notice: notice(r), NeedCode: h.needsCode(adm)}
	status := http.StatusOK
	if len(q) > 254 {
		h.Templates.Render(w, http.StatusBadRequest, "admin", "Administration", "",
			homeData{Error: "That is longer than any email address (254 characters at most). Nothing was searched."})
		return
	}
	if q != "" {
		a, err := h.Admin.FindUser(ctx, q)
		switch {
		case err == nil:
			http.Redirect(w, r, userPath(a.ID), http.StatusSeeOther)
			return
		case !errors.Is(err, users.ErrNotFound):
			h.Errors.Internal(w, r, err)
			return
		}
		status = http.StatusNotFound
		d.Error = "No user has the email address " + q + "."
		d.Heading = "Emails containing “" + q + "”"
	}
	h.renderHome(w, r, status, q, d)
}

// renderHome renders the front page with the users whose email contains
// substr.
func (h *Handler) renderHome(w http.ResponseWriter, r *http.Request, status int, substr string, d homeData) {
	list, err := listUsers(r.Context(), h.Admin, substr, listLimit)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	for _, u := range list {
		d.Users = append(d.Users, userRow{ID: u.ID, Email: u.Email, Name: u.Name, Admin: u.IsAdmin,
			Disabled: u.Disabled(), Created: pages.Time(u.CreatedAt), CreatedISO: iso(u.CreatedAt)})
	}
	h.Templates.Render(w, status, "admin", "Administration", h.Sessions.CSRFToken(r), d)
}

// listUsers returns up to limit users, newest first, whose email contains
// substr (all users when it is empty). It is a read for this page alone,
// so it lives here rather than in users.Store, whose List is oldest first
// and unfiltered.
func listUsers(ctx context.Context, svc *admin.Service, substr string, limit int) ([]users.User, error) {
	pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(substr) + "%"
	rows, err := db.Conn(ctx, svc.Pool).Query(ctx, `
		SELECT id::text, email, name, is_admin, require_mfa, disabled_at, created_at FROM users
		WHERE email ILIKE $1
		ORDER BY created_at DESC, id DESC LIMIT $2`, pattern, limit)
	if err != nil {
		return nil, fmt.Errorf("console: list users: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (users.User, error) {
		var u users.User
		err := row.Scan(&u.ID, &u.Email, &u.Name, &u.IsAdmin, &u.RequireMFA, &u.DisabledAt, &u.CreatedAt)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("console: list users: %w", err)
	}
	return list, nil
}

// userData is a user's page.
type userData struct {
	User        admin.Account
	Created     string
	DisabledAt  string
	MFA         string // "on", "off" or "" when unknown
	Self        bool   // the administrator's own account
	Notice      string
	Error       string
	Sessions    []sessionView
	Live        int
	WindowDays  int
	Unconfirmed int // notifications not (yet) delivered
	Activity    []activityView
	Passkeys    []passkeyView
	// NeedCode: the administrator's last second factor is older than
	// FreshFactor, so the destructive actions' forms ask for a code.
	NeedCode bool
}

// passkeyView is one of the user's passkeys.
type passkeyView struct {
	ID, Name, AAGUID      string
	Synced                bool
	Added, AddedISO       string
	LastUsed, LastUsedISO string
}

type sessionView struct {
	SID, UserAgent, IP     string
	Device                 string // "Chrome on Linux", as /account says it
	Started, StartedISO    string
	LastSeen, LastSeenISO  string
	Ended, EndedISO, Why   string // Ended is "" while live
	MultiFactor            bool
	Passkey                bool // signed in with a passkey
	Apps                   []appView
	NotificationsPending   int
	NotificationsDelivered int
}

type appView struct {
	ClientID, Name    string
	SignedIn          string
	BackchannelLogout bool
	Notifications     []notificationView
}

type notificationView struct {
	ID        int64
	State     string
	Reason    string
	Attempts  int
	LastError string
	When      string // when it reached its state, or when a pending one is tried next
	WhenISO   string
	Retry     bool
}

// user is GET /admin/users/{id}.
func (h *Handler) user(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administrator(w, r)
	if !ok {
		return
	}
	h.renderUser(w, r, adm, r.PathValue("id"), http.StatusOK, userData{Notice: notice(r)})
}

// renderUser renders the page of user id with status around the given
// messages; an unknown id is the 404 page.
func (h *Handler) renderUser(w http.ResponseWriter, r *http.Request, adm signedIn, id string, status int, d userData) {
	ctx := r.Context()
	a, err := h.Admin.User(ctx, id)
	if errors.Is(err, users.ErrNotFound) {
		h.noSuchUser(w)
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	list, err := h.Admin.ListSessions(ctx, a.ID, admin.ListOptions{Revoked: true})
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	d.User, d.Self, d.NeedCode = a, a.ID == adm.ID, h.needsCode(adm)
	d.Created = pages.Time(a.CreatedAt)
	if a.DisabledAt != nil {
		d.DisabledAt = pages.Time(*a.DisabledAt)
	}
	if a.MFAEnabled != nil {
		d.MFA = map[bool]string{true: "on", false: "off"}[*a.MFAEnabled]
	}
	window := h.Admin.RecentlyRevoked
	if window <= 0 {
		window = admin.DefaultRecentlyRevoked
	}
	d.WindowDays = int(window / (24 * time.Hour))
	now := h.now()
	for _, s := range list.Sessions {
		v := sessionView{SID: s.SID, UserAgent: s.UserAgent, Device: device.Name(s.UserAgent), IP: s.IP,
			Started: pages.Time(s.CreatedAt), StartedISO: iso(s.CreatedAt),
			LastSeen: pages.Ago(now, s.LastSeenAt), LastSeenISO: iso(s.LastSeenAt), MultiFactor: sessions.MultiFactorACR(s.ACR),
			Passkey: s.ACR == sessions.ACRPhishingResistant}
		if s.RevokedAt != nil {
			v.Ended, v.EndedISO, v.Why = pages.Ago(now, *s.RevokedAt), iso(*s.RevokedAt), reasonText(s.RevokedReason)
		} else {
			d.Live++
		}
		for _, app := range s.Apps {
			av := appView{ClientID: app.ClientID, Name: app.Name, BackchannelLogout: app.BackchannelLogout}
			if av.Name == app.ClientID {
				av.Name = ""
			}
			if app.SignedInAt != nil {
				av.SignedIn = pages.Time(*app.SignedInAt)
			}
			for _, n := range app.Notifications {
				nv := notificationViewOf(n, now)
				if n.State == admin.StateDelivered {
					v.NotificationsDelivered++
				} else {
					v.NotificationsPending++
					d.Unconfirmed++
				}
				av.Notifications = append(av.Notifications, nv)
			}
			v.Apps = append(v.Apps, av)
		}
		d.Sessions = append(d.Sessions, v)
	}
	keys, err := h.Admin.Passkeys(ctx, a.ID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	for _, k := range keys {
		v := passkeyView{ID: k.ID, Name: k.Name, AAGUID: k.AAGUID, Synced: k.Synced(), Added: pages.Time(k.CreatedAt), AddedISO: iso(k.CreatedAt)}
		if k.LastUsedAt != nil {
			v.LastUsed, v.LastUsedISO = pages.Ago(now, *k.LastUsedAt), iso(*k.LastUsedAt)
		}
		d.Passkeys = append(d.Passkeys, v)
	}
	log, err := h.Admin.AuditLog(ctx, audit.Query{UserID: a.ID, Limit: recentActivity})
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	for _, e := range log {
		d.Activity = append(d.Activity, activityOf(e, a.User, adm.User, now))
	}
	h.Templates.Render(w, status, "admin-user", a.Email, h.Sessions.CSRFToken(r), d)
}

func notificationViewOf(n admin.Notification, now time.Time) notificationView {
	v := notificationView{ID: n.ID, State: n.State, Reason: reasonText(n.Reason), Attempts: n.Attempts,
		LastError: n.LastError, Retry: n.State != admin.StateDelivered}
	at := n.CreatedAt
	switch {
	case n.DeliveredAt != nil:
		v.When, at = pages.Ago(now, *n.DeliveredAt), *n.DeliveredAt
	case n.FailedAt != nil:
		v.When, at = pages.Ago(now, *n.FailedAt), *n.FailedAt
	case n.AbandonedAt != nil:
		v.When, at = pages.Ago(now, *n.AbandonedAt), *n.AbandonedAt
	case n.NextAttemptAt != nil && n.NextAttemptAt.After(now):
		v.When, at = "next try "+pages.Until(now, *n.NextAttemptAt), *n.NextAttemptAt
	default:
		v.When = "queued " + pages.Ago(now, n.CreatedAt)
	}
	v.WhenISO = iso(at)
	return v
}

func (h *Handler) noSuchUser(w http.ResponseWriter) {
	h.Templates.Error(w, http.StatusNotFound, "There is no user with that id. Nothing was changed.",
		"Find the user by email on the console's front page, /admin.")
}

func userPath(id string) string { return "/admin/users/" + id }

// reasons says in words why a session ended, by the reason recorded.
var reasons = map[string]string{
	"rp_logout":         "signed out from an app",
	"user_sign_out":     "signed out on the account page",
	"user_sign_out_all": "signed out everywhere",
	"admin_revoke":      "revoked by an administrator",
	"expired":           "expired",
	"user_disabled":     "account disabled",
	"user_deleted":      "account deleted",
	"password_changed":  "password changed",
	"factors_changed":   "two-factor authentication changed or reset",
}

func reasonText(reason string) string {
	if s, ok := reasons[reason]; ok {
		return s
	}
	return reason
}

// notices are the messages a redirect back may show, by key; the counts
// come as integers, so no text from the URL reaches the page.
func notice(r *http.Request) string {
	q := r.URL.Query()
	n, _ := strconv.Atoi(q.Get("sessions"))
	m, _ := strconv.Atoi(q.Get("notifications"))
	ended := "ended " + pages.Plural(max(n, 0), "session") + "; " + pages.Plural(max(m, 0), "app") + " to be told over the back channel."
	switch q.Get("notice") {
	case "revoked":
		return "All sessions and tokens revoked: " + ended
	case "mfa-reset":
		return "Two-factor authentication reset (authenticator app, recovery codes and passkeys): " + ended +
			" They sign in with their password next."
	case "passkey-removed":
		return "Passkey removed: " + ended
	case "password-set":
		return "Temporary password set: " + ended + " Give it to them by a channel other than their email; " +
			fmt.Sprintf("they choose their own at the next sign-in, within %d hours.", int(users.TemporaryPasswordLifetime.Hours()))
	case "disabled":
		return "Account disabled: " + ended
	case "deleted":
		return "Account deleted: " + ended
	case "created":
		return "Account created with a temporary password. Give it to them by a channel other than their email; " +
			fmt.Sprintf("they choose their own at the first sign-in, within %d hours.", int(users.TemporaryPasswordLifetime.Hours()))
	case "promoted":
		return "They are an administrator now. They use the console and the admin API after a sign-in with two factors."
	case "demoted":
		return "They are no longer an administrator: the console and their admin tokens stop working for them now."
	case "service-account-on":
		return "The app is an admin service account now: its client_credentials tokens with the admin scope may call the admin API."
	case "service-account-off":
		return "The app is no longer an admin service account: its admin API calls are refused from now on."
	case "par-required":
		return "The app must push its authorization requests now (PAR): the sign-in service refuses it any other."
	case "par-optional":
		return "The app may send its authorization requests through the browser again, or push them."
	case "dpop-required":
		return "The app gets tokens only with a DPoP proof now: each is bound to its key. Tokens it holds already stay as they are."
	case "dpop-optional":
		return "The app gets tokens with or without a DPoP proof now."
	case "format-jwt":
		return "The app's new access tokens are JWTs (RFC 9068) its resource servers can verify themselves; the ones it holds stay opaque until they expire."
	case "format-opaque":
		return "The app's new access tokens are opaque: its resource servers ask the introspection endpoint. JWTs it holds stay valid until they expire."
	case "enabled":
		return "Account enabled. They can sign in again; their old sessions stay ended."
	case "retry":
		return "The notification is due again now; this page shows how it went when you reload it."
	case "stream-retry":
		n, _ := strconv.Atoi(q.Get("events"))
		return pages.Plural(max(n, 0), "event") + " of the stream due again now; reload this page to see how they went."
	case "stream-paused":
		return "The stream is paused: its events wait until it is enabled. Its receiver is told."
	case "stream-enabled":
		return "The stream is enabled: what it held is on its way. Its receiver is told."
	}
	return ""
}

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339) }
