package alerts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/device"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/sessions"
)

// OutboxKind is the outbox row kind of an alert waiting for its mail.
const OutboxKind = "alert"

// LinkLifetime is how long a "This wasn't me" link works.
const LinkLifetime = 7 * 24 * time.Hour

// LinkPath is where the link leads (GET shows a page, POST acts).
const LinkPath = "/alerts/not-me"

// ForgotPath is the password reset's first page, where a report leads.
const ForgotPath = "/login/forgot"

// DeviceLifetime is how long a browser keeps its device cookie; each
// sign-in renews it.
const DeviceLifetime = 365 * 24 * time.Hour

// ReasonUserReported ends the sessions of a "This wasn't me".
const ReasonUserReported = sessions.ReasonUserReported

// ActionReported is the audit action of a "This wasn't me".
const ActionReported = "alerts.reported"

// Events an alert reports.
const (
	EventNewDevice       = "new_device"
	EventPasswordChanged = "password_changed"
	EventFactorsChanged  = "factors_changed"
	EventAdminRevoked    = "admin_revoked"
)

// mailKinds is each event's mail.
var mailKinds = map[string]string{
	EventNewDevice: mail.KindNewDevice, EventPasswordChanged: mail.KindPasswordChanged,
	EventFactorsChanged: mail.KindFactorsChanged, EventAdminRevoked: mail.KindAdminRevoked,
}

// changes are the audit actions that change a sign-in factor, a person's
// own or an administrator's, with the event they are.
var changes = map[string]string{
	audit.ActionChangePassword: EventPasswordChanged, audit.ActionResetPassword: EventPasswordChanged,
	audit.ActionEnableMFA: EventFactorsChanged, audit.ActionDisableMFA: EventFactorsChanged,
	audit.ActionRegenerateRecoveryCodes: EventFactorsChanged,
	audit.ActionAddPasskey:              EventFactorsChanged, audit.ActionRemovePasskey: EventFactorsChanged,
	"users.set_password": EventPasswordChanged, "users.reset_mfa": EventFactorsChanged,
	"users.remove_passkey": EventFactorsChanged,
}

// event is an OutboxKind row's payload: what happened, to whom, when,
// from which browser and address.
type event struct {
	Event     string    `json:"event"`
	UserID    string    `json:"user_id"`
	SID       string    `json:"sid,omitempty"` // new_device: the session the link ends
	UserAgent string    `json:"user_agent,omitempty"`
	IP        string    `json:"ip,omitempty"`
	ByAdmin   bool      `json:"by_admin,omitempty"`
	At        time.Time `json:"at"`
}

// Service queues alerts, mails them, and answers their links.
type Service struct {
	Pool     *pgxpool.Pool
	Mailer   *mail.Mailer
	Sessions *sessions.Manager
	// Secure marks the device cookie Secure with the __Host- prefix (an
	// https issuer).
	Secure bool
	Now    func() time.Time
}

// DeviceCookie is the device cookie's name.
func (s *Service) DeviceCookie() string {
	if s.Secure {
		return "__Host-idp_device"
	}
	return "idp_device"
}

// device returns r's device cookie, or "" when it has none that could be
// ours (43 characters of base64url: 32 random bytes).
func (s *Service) device(r *http.Request) string {
	c, err := r.Cookie(s.DeviceCookie())
	if err != nil || len(c.Value) != 43 {
		return ""
	}
	if _, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil {
		return ""
	}
	return c.Value
}

// ensureDevice returns r's device cookie, making one when it has none,
// and (re)sets it on w for another DeviceLifetime.
func (s *Service) ensureDevice(w http.ResponseWriter, r *http.Request) string {
	v := s.device(r)
	if v == "" {
		b := make([]byte, 32)
		rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
	}
	http.SetCookie(w, &http.Cookie{Name: s.DeviceCookie(), Value: v, Path: "/", HttpOnly: true, Secure: s.Secure,
		SameSite: http.SameSiteLaxMode, Expires: s.Now().Add(DeviceLifetime), MaxAge: int(DeviceLifetime / time.Second)})
	return v
}

// QueueSignIn is a login.Handler hook: the new session s was made for the
// request r. In the unit in ctx (the session's own) it records the
// browser's device for the account and, when the account has signed in
// before but never from this device, queues the new-device alert, in one
// statement that adds nothing to the sign-in's round trip. The first
// sign-in an account ever makes (or the first since alerts began) alerts
// nobody: there is no "before" to differ from.
func (s *Service) QueueSignIn(ctx context.Context, w http.ResponseWriter, r *http.Request, ss sessions.Session) {
	u, ok := db.From(ctx)
	if !ok {
		panic("alerts: QueueSignIn outside a unit of work")
	}
	dev := s.ensureDevice(w, r)
	now := s.Now()
	payload, _ := json.Marshal(event{Event: EventNewDevice, UserID: ss.UserID, SID: ss.ID,
		UserAgent: ss.UserAgent, IP: ss.IP, At: now})
	u.Queue(`
		WITH prior AS (
			SELECT count(*) AS devices, count(*) FILTER (WHERE device_hash = $2) AS known
			FROM known_devices WHERE user_id = $1::uuid
		), seen AS (
			INSERT INTO known_devices (user_id, device_hash, first_seen, last_seen) VALUES ($1::uuid, $2, $3, $3)
			ON CONFLICT (user_id, device_hash) DO UPDATE SET last_seen = excluded.last_seen
		)
		INSERT INTO outbox (kind, sid, subject, client_id, uri, reason, payload, created_at, next_attempt_at)
		SELECT $4, $5::uuid, $1, '', '', $6, $7::jsonb, $3, $3 FROM prior WHERE devices > 0 AND known = 0`,
		ss.UserID, mail.HashToken(dev), now, OutboxKind, ss.ID, EventNewDevice, string(payload)).
		MapErr(func(err error) error { return fmt.Errorf("alerts: sign-in: %w", err) })
}

// queue puts one alert on the outbox in the unit in ctx.
func (s *Service) queue(ctx context.Context, e event) error {
	return outbox.Queue(ctx, s.Pool, e.At, outbox.Message{Kind: OutboxKind, Subject: e.UserID, SID: e.SID,
		Reason: e.Event, Payload: e})
}

// OnFactorsChanged is a sessions.Manager hook: the person changed their
// password or a second factor, from the request WithClient saw.
func (s *Service) OnFactorsChanged(ctx context.Context, userID, action string) error {
	ev, ok := changes[action]
	if !ok {
		return nil
	}
	c := clientFrom(ctx)
	return s.queue(ctx, event{Event: ev, UserID: userID, UserAgent: c.userAgent, IP: c.ip, At: s.Now()})
}

// OnAdminChange is an admin.Service hook: an administrator set the
// person's password or removed their second factors.
func (s *Service) OnAdminChange(ctx context.Context, target, action string, _ any) error {
	ev, ok := changes[action]
	if !ok {
		return nil
	}
	return s.queue(ctx, event{Event: ev, UserID: target, ByAdmin: true, At: s.Now()})
}

// OnRevoke is a sessions.Manager hook: an administrator's revoke-all
// tells each person whose sessions it ended, once.
func (s *Service) OnRevoke(ctx context.Context, e sessions.Ended) error {
	if e.Reason != sessions.ReasonAdminRevoke {
		return nil
	}
	seen := map[string]bool{}
	for _, ended := range e.Sessions {
		if seen[ended.UserID] {
			continue
		}
		seen[ended.UserID] = true
		if err := s.queue(ctx, event{Event: EventAdminRevoked, UserID: ended.UserID, ByAdmin: true, At: e.At}); err != nil {
			return err
		}
	}
	return nil
}

// Process mails the alert e: in one transaction it makes its "This
// wasn't me" link (none for a revoke-all: nothing is left to end) and
// queues the mail. An account since disabled or deleted gets nothing.
func (s *Service) Process(ctx context.Context, e event) error {
	kind, ok := mailKinds[e.Event]
	if !ok {
		return fmt.Errorf("alerts: unknown event %q", e.Event)
	}
	now := s.Now()
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		q := db.Conn(ctx, s.Pool)
		var address, name string
		err := q.QueryRow(ctx, `SELECT email, name FROM users WHERE id = $1::uuid AND disabled_at IS NULL`, e.UserID).
			Scan(&address, &name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		a := mail.Action{Kind: kind, To: address, Name: name, Path: ForgotPath, Facts: facts(e)}
		if e.Event != EventAdminRevoked {
			token, hash := mail.NewLinkToken()
			expires := e.At.Add(LinkLifetime)
			var sid *string
			if e.Event == EventNewDevice {
				sid = &e.SID
			}
			if _, err := q.Exec(ctx, `
				INSERT INTO alert_links (token_hash, user_id, event, sid, created_at, expires_at)
				VALUES ($1, $2::uuid, $3, $4::uuid, $5, $6)`, hash, e.UserID, e.Event, sid, now, expires); err != nil {
				return err
			}
			a.Path, a.Token, a.Expires = LinkPath, token, expires.Sub(now)
		}
		return s.Mailer.Queue(ctx, e.UserID, a)
	})
	if err != nil {
		return fmt.Errorf("alerts: process %s: %w", e.Event, err)
	}
	return nil
}

// facts are what the mail says about e: when, and from which browser and
// address, or that an administrator did it.
func facts(e event) []mail.Fact {
	f := []mail.Fact{{Label: "When", Value: e.At.UTC().Format("Mon 2 Jan 2006, 15:04 UTC")}}
	if e.ByAdmin {
		return append(f, mail.Fact{Label: "By", Value: "an administrator"})
	}
	if e.UserAgent != "" || e.IP != "" {
		f = append(f, mail.Fact{Label: "Browser", Value: device.Name(e.UserAgent)})
	}
	if e.IP != "" {
		f = append(f, mail.Fact{Label: "Address", Value: e.IP})
	}
	return f
}

// Kind is the outbox kind that turns alerts into mail: database work,
// retried by the outbox if the database fails.
func (s *Service) Kind() outbox.Kind {
	return outbox.Kind{
		Timeout: 10 * time.Second, Log: "alert",
		Send: func(ctx context.Context, j outbox.Job) outbox.Result {
			var e event
			if err := json.Unmarshal(j.Payload, &e); err != nil {
				return outbox.Result{Outcome: outbox.Failed, Error: "unreadable alert"}
			}
			if _, ok := mailKinds[e.Event]; !ok {
				return outbox.Result{Outcome: outbox.Failed, Error: "unknown alert event " + e.Event}
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.Process(ctx, e); err != nil {
				return outbox.Result{Outcome: outbox.Retrying, Error: err.Error()}
			}
			return outbox.Result{Outcome: outbox.Delivered}
		},
	}
}

// client is the browser and address of the request a change came in.
type client struct{ userAgent, ip string }

type clientKey struct{}

// WithClient keeps each request's User-Agent and client address in its
// context, for the alerts of changes whose hooks see only the context.
// It wraps handlers inside the ops middleware, which has already put the
// client of a trusted proxy in RemoteAddr.
func WithClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		ua := r.UserAgent()
		if len(ua) > 256 {
			ua = ua[:256]
		}
		r2 := r.WithContext(context.WithValue(r.Context(), clientKey{}, client{userAgent: ua, ip: ip}))
		next.ServeHTTP(w, r2)
		// The mux records the matched route on the request it was given;
		// the ops middleware outside reads it from its own (metrics, logs).
		r.Pattern = r2.Pattern
	})
}

func clientFrom(ctx context.Context) client {
	c, _ := ctx.Value(clientKey{}).(client)
	return c
}

// Sweeps are the janitor's: links a day past expiry (so a late click
// says "expired", not "unknown"), and devices unseen for longer than
// their cookie lives (a sign-in from one again is a new device anyway).
// known_devices' key is two columns; its rows are named by ctid, which
// holds still within the one DELETE that selects and deletes them.
var Sweeps = []db.Sweep{
	{Table: "alert_links", Key: "token_hash", Due: "expires_at < $1", Keep: 24 * time.Hour},
	{Table: "known_devices", Key: "ctid", Due: "last_seen < $1", Keep: DeviceLifetime},
}
