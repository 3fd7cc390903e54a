// Package sessions owns the central SSO session: the PostgreSQL row, the
// browser cookie that points at it, its idle and absolute timeouts, the apps
// (client sessions) that hold a session under its sid, and the single
// revocation path through which every session ends.
//
// The cookie holds an opaque 256-bit random value; only its SHA-256 is
// stored, so a database leak yields no usable cookie. The public session id
// (sid) is a separate random UUID that appears in ID tokens and logout
// tokens and never works as a cookie.
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/users"
)

// ErrNoSession means the request carries no live session.
var ErrNoSession = errors.New("sessions: no valid session")

// Authentication method references (RFC 8176) and the ACR values we issue.
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
	AMRMFA      = "mfa"

	// ACRPassword is a single-factor sign-in; ACRMFA a two-factor one;
	// ACRPhishingResistant one with a passkey (alone or after the
	// password), whose answer is bound to this site's origin, so a
	// look-alike site that relays the sign-in gets nothing it can use.
	ACRPassword          = "urn:idp:acr:pwd"
	ACRMFA               = "urn:idp:acr:mfa"
	ACRPhishingResistant = "urn:idp:acr:phr"
)

// ACRSatisfies reports whether a session of class have meets a demand for
// class want: phishing-resistant meets two-factor, which meets password.
// An unknown want is met by nothing.
func ACRSatisfies(have, want string) bool {
	rank := func(acr string) int {
		switch acr {
		case ACRPassword:
			return 1
		case ACRMFA:
			return 2
		case ACRPhishingResistant:
			return 3
		}
		return 0
	}
	return rank(want) > 0 && rank(have) >= rank(want)
}

// MultiFactorACR reports whether acr proves at least two factors. It is the
// one test of "a two-factor sign-in": for the console, the admin scope and
// the admin API alike.
func MultiFactorACR(acr string) bool { return ACRSatisfies(acr, ACRMFA) }

// Session is one central SSO session.
type Session struct {
	ID                string // the public sid
	UserID            string
	CreatedAt         time.Time
	LastSeenAt        time.Time
	IdleExpiresAt     time.Time
	AbsoluteExpiresAt time.Time
	AuthTime          time.Time
	AMR               []string
	ACR               string
	UserAgent         string
	IP                string
	// Remember: the person asked to stay signed in on this device, so the
	// cookie outlives the browser (up to AbsoluteExpiresAt); otherwise it
	// is a browser-session cookie.
	Remember      bool
	RevokedAt     *time.Time
	RevokedReason string
	Clients       []string // apps holding a session under this sid
	// SecondFactorAt is when the owner last gave a second factor in this
	// session: at a two-factor sign-in, a step-up, or to confirm an
	// administrator's destructive action (QueueSecondFactorGiven). Zero for
	// a password-only session.
	SecondFactorAt time.Time
}

// MultiFactor reports whether the session was established with at least
// two factors (a passkey with user verification is two: something held and
// something known or been).
func (s Session) MultiFactor() bool { return MultiFactorACR(s.ACR) }

// PhishingResistant reports whether the session was established with a
// passkey.
func (s Session) PhishingResistant() bool { return s.ACR == ACRPhishingResistant }

// SecondFactorWithin reports whether the owner gave a second factor in the
// last d before now.
func (s Session) SecondFactorWithin(d time.Duration, now time.Time) bool {
	return s.MultiFactor() && !s.SecondFactorAt.IsZero() && now.Sub(s.SecondFactorAt) <= d
}

// Manager creates, finds and ends sessions.
type Manager struct {
	Pool            *pgxpool.Pool
	Now             func() time.Time
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// Secure marks cookies Secure and gives them the __Host- prefix; set when
	// the issuer is https.
	Secure bool
	// CSRFKey keys the anti-forgery tokens of signed-in forms.
	CSRFKey []byte
	// RotatedCSRFKeys still verify tokens, so a form opened before the
	// server secret was rotated can still be sent.
	RotatedCSRFKeys [][]byte
	// OnRevoke hooks run inside every revocation's transaction once its
	// sessions are marked ended, and may queue into the unit in ctx (the
	// security events of package ssf); an error rolls the revocation back.
	// Set them before the Manager is used.
	OnRevoke []func(ctx context.Context, e Ended) error
}

// CookieName is the session cookie's name for this manager.
func (m *Manager) CookieName() string {
	if m.Secure {
		return "__Host-idp_session"
	}
	return "idp_session"
}

// NewToken returns a fresh 256-bit random value, base64url encoded.
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is how cookie values and other bearer values are stored.
func HashToken(v string) []byte {
	h := sha256.Sum256([]byte(v))
	return h[:]
}

// NewSession describes a completed sign-in.
type NewSession struct {
	UserID    string
	AuthTime  time.Time
	AMR       []string
	ACR       string
	UserAgent string
	IP        string
	// Remember keeps the cookie after the browser closes ("keep me signed
	// in on this device"); without it the cookie is deleted with the
	// browser session. The server-side timeouts hold either way.
	Remember bool
}

// QueueCreate queues the new session's INSERT in the unit in ctx and sets
// a fresh cookie on w. A value the browser held before sign-in is never
// reused (no session fixation). The sid is made here rather than by the
// database, so the INSERT has no result to wait for and goes out with the
// caller's other writes: the sign-in sends it with the end of its login
// flow. The caller commits the unit before the response that carries the
// cookie, and fails that response if it cannot.
func (m *Manager) QueueCreate(ctx context.Context, w http.ResponseWriter, n NewSession) Session {
	now := m.Now()
	token := NewToken()
	if n.AMR == nil {
		n.AMR = []string{}
	}
	s := Session{
		ID:     uuid.NewString(),
		UserID: n.UserID, CreatedAt: now, LastSeenAt: now,
		IdleExpiresAt: now.Add(m.IdleTimeout), AbsoluteExpiresAt: now.Add(m.AbsoluteTimeout),
		AuthTime: n.AuthTime.UTC().Truncate(time.Second), AMR: n.AMR, ACR: n.ACR,
		UserAgent: truncate(n.UserAgent, 256), IP: n.IP, Remember: n.Remember,
	}
	var secondFactorAt *time.Time
	if s.MultiFactor() {
		s.SecondFactorAt = s.AuthTime
		secondFactorAt = &s.SecondFactorAt
	}
	unit(ctx).Queue(`
		INSERT INTO sso_sessions (id, cookie_hash, user_id, created_at, last_seen_at, idle_expires_at,
			absolute_expires_at, auth_time, amr, acr, user_agent, ip, remember, second_factor_at)
		VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		s.ID, HashToken(token), s.UserID, now, s.IdleExpiresAt, s.AbsoluteExpiresAt, s.AuthTime,
		s.AMR, s.ACR, s.UserAgent, s.IP, s.Remember, secondFactorAt).
		MapErr(func(err error) error { return fmt.Errorf("sessions: create: %w", err) })
	m.setCookie(w, token, s.Remember, s.AbsoluteExpiresAt)
	return s
}

// setCookie sets the session cookie: persistent until expires when the
// person asked to be remembered, a browser-session cookie (no Expires,
// deleted when the browser closes) otherwise.
func (m *Manager) setCookie(w http.ResponseWriter, value string, remember bool, expires time.Time) {
	c := &http.Cookie{
		Name: m.CookieName(), Value: value, Path: "/", HttpOnly: true, Secure: m.Secure,
		SameSite: http.SameSiteLaxMode,
	}
	if remember {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

// unit is the unit of work the Queue methods add to; they are written for
// callers that make one, and calling them outside one is a bug.
func unit(ctx context.Context) *db.Unit {
	u, ok := db.From(ctx)
	if !ok {
		panic("sessions: a Queue method called outside a unit of work (db.Tx or db.Pipeline)")
	}
	return u
}

// ClearCookie tells the browser to forget its session cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: m.CookieName(), Value: "", Path: "/", HttpOnly: true, Secure: m.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1,
	})
}

// CookieValue returns the raw session cookie of r ("" when absent).
func (m *Manager) CookieValue(r *http.Request) string {
	c, err := r.Cookie(m.CookieName())
	if err != nil {
		return ""
	}
	return c.Value
}

// Current returns the live session of r and slides its idle timeout. A
// revoked or expired session, or one whose user is disabled, is
// ErrNoSession.
func (m *Manager) Current(ctx context.Context, r *http.Request) (Session, error) {
	s, _, err := m.CurrentUser(ctx, r)
	return s, err
}

// CurrentUser is Current with the session's account, read in the same
// round trip.
func (m *Manager) CurrentUser(ctx context.Context, r *http.Request) (Session, users.User, error) {
	v := m.CookieValue(r)
	if v == "" {
		return Session{}, users.User{}, ErrNoSession
	}
	return m.current(ctx, HashToken(v))
}

// touchEvery bounds writes: last_seen_at and the idle expiry move at most
// once a minute per session, not on every request, and more often when the
// idle timeout is short, so activity always keeps a session alive: within
// an eighth of the timeout.
func (m *Manager) touchEvery() time.Duration {
	return min(time.Minute, m.IdleTimeout/8)
}

func (m *Manager) current(ctx context.Context, cookieHash []byte) (Session, users.User, error) {
	now := m.Now()
	// One round trip: find the live session and its account, and slide the
	// idle expiry when it was last touched more than touchEvery ago.
	row := db.Conn(ctx, m.Pool).QueryRow(ctx, `
		WITH live AS (
			SELECT s.id FROM sso_sessions s JOIN users u ON u.id = s.user_id
			WHERE s.cookie_hash = $1 AND s.revoked_at IS NULL AND u.disabled_at IS NULL
			  AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2
		), touched AS (
			UPDATE sso_sessions s SET last_seen_at = $2,
				idle_expires_at = least($2 + $3::interval, s.absolute_expires_at)
			FROM live WHERE s.id = live.id AND s.last_seen_at < $2 - $4::interval
			RETURNING s.id, s.last_seen_at, s.idle_expires_at
		)
		SELECT `+users.Columns+`, s.id, s.created_at, coalesce(t.last_seen_at, s.last_seen_at),
			coalesce(t.idle_expires_at, s.idle_expires_at), s.absolute_expires_at, s.auth_time,
			s.amr, s.acr, s.user_agent, s.ip, s.remember, s.second_factor_at
		FROM sso_sessions s JOIN live ON live.id = s.id JOIN users u ON u.id = s.user_id
		LEFT JOIN touched t ON t.id = s.id`,
		cookieHash, now, interval(m.IdleTimeout), interval(m.touchEvery()))
	var s Session
	var secondFactorAt *time.Time
	u, err := users.ScanWith(row, &s.ID, &s.CreatedAt, &s.LastSeenAt, &s.IdleExpiresAt,
		&s.AbsoluteExpiresAt, &s.AuthTime, &s.AMR, &s.ACR, &s.UserAgent, &s.IP, &s.Remember, &secondFactorAt)
	if errors.Is(err, users.ErrNotFound) {
		return Session{}, users.User{}, ErrNoSession
	}
	if err != nil {
		return Session{}, users.User{}, fmt.Errorf("sessions: current: %w", err)
	}
	s.UserID = u.ID
	if secondFactorAt != nil {
		s.SecondFactorAt = *secondFactorAt
	}
	return s, u, nil
}

// Get returns a session by sid, live or not, with its apps.
func (m *Manager) Get(ctx context.Context, sid string) (Session, error) {
	if !isUUID(sid) {
		return Session{}, ErrNoSession
	}
	list, err := m.list(ctx, `s.id = $1::uuid`, sid)
	if err != nil {
		return Session{}, err
	}
	if len(list) == 0 {
		return Session{}, ErrNoSession
	}
	return list[0], nil
}

// ListByUser returns the user's live sessions, newest first, with their apps.
func (m *Manager) ListByUser(ctx context.Context, userID string) ([]Session, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	return m.list(ctx, `s.user_id = $1::uuid AND s.revoked_at IS NULL
		AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2`, userID, m.Now())
}

func (m *Manager) list(ctx context.Context, where string, args ...any) ([]Session, error) {
	rows, err := db.Conn(ctx, m.Pool).Query(ctx, `
		SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at, s.absolute_expires_at,
			s.auth_time, s.amr, s.acr, s.user_agent, s.ip, s.remember, s.revoked_at, coalesce(s.revoked_reason, ''),
			s.second_factor_at,
			coalesce(array_agg(c.client_id ORDER BY c.created_at) FILTER (WHERE c.client_id IS NOT NULL), '{}')
		FROM sso_sessions s LEFT JOIN client_sessions c ON c.sid = s.id
		WHERE `+where+`
		GROUP BY s.id ORDER BY s.created_at DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("sessions: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Session, error) {
		var s Session
		var secondFactorAt *time.Time
		err := row.Scan(&s.ID, &s.UserID, &s.CreatedAt, &s.LastSeenAt, &s.IdleExpiresAt,
			&s.AbsoluteExpiresAt, &s.AuthTime, &s.AMR, &s.ACR, &s.UserAgent, &s.IP, &s.Remember, &s.RevokedAt,
			&s.RevokedReason, &secondFactorAt, &s.Clients)
		if secondFactorAt != nil {
			s.SecondFactorAt = *secondFactorAt
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("sessions: list: %w", err)
	}
	return out, nil
}

// QueueAddClient queues in the unit in ctx the record that clientID now
// holds a session under sid; it fails the unit with ErrNoSession when the
// session has ended. The check holds a share lock on the session row until
// the unit commits, so a revocation running at the same moment either
// comes first (and nothing is written) or waits and then sees this app and
// tells it: no app ends up holding a session the provider has ended
// without notice. In the authorization endpoint it goes out with the code
// it comes with, and its failure rolls the code back.
func (m *Manager) QueueAddClient(ctx context.Context, sid, clientID string) {
	unit(ctx).Queue(`
		WITH checked AS (
			SELECT idp_assert(EXISTS (SELECT 1 FROM (`+LiveSQL("$1::uuid", "$3")+`) live), 'session ended')
		)
		INSERT INTO client_sessions (sid, client_id, created_at)
		SELECT $1::uuid, $2, $3 FROM checked
		ON CONFLICT DO NOTHING`, nullUUID(sid), clientID, m.Now()).
		MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return fmt.Errorf("sessions: add client: %w", ErrNoSession)
			}
			return fmt.Errorf("sessions: add client: %w", err)
		})
}

// LiveSQL selects the session with id sid if it is live at now (not
// revoked, neither timeout passed), locked FOR SHARE: a statement that
// must not outlive the session (a client session, a token) holds the lock
// until it commits, and a revocation, which updates the row, waits for it
// or goes first. Revocation locks sessions before tokens, and so does
// everything that checks this.
func LiveSQL(sid, now string) string {
	return `SELECT id FROM sso_sessions WHERE id = ` + sid + ` AND revoked_at IS NULL
		AND idle_expires_at > ` + now + ` AND absolute_expires_at > ` + now + ` FOR SHARE`
}

// QueueAssertLive queues in the unit in ctx a check that the session sid
// is live, which fails the unit with ErrSessionEnded when it is not, and
// holds the session's share lock until the unit commits (see LiveSQL). Token
// issuance for a session-bound grant queues it before its writes.
func (m *Manager) QueueAssertLive(ctx context.Context, sid string) {
	AssertLive(unit(ctx), sid, m.Now())
}

// AssertLive is QueueAssertLive for a caller (the fosite store) that holds
// the unit and the clock itself.
func AssertLive(u *db.Unit, sid string, now time.Time) {
	u.Queue(`SELECT idp_assert(EXISTS (`+LiveSQL("$1::uuid", "$2")+`), 'session ended')`, nullUUID(sid), now).
		MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return ErrSessionEnded
			}
			return fmt.Errorf("sessions: assert live: %w", err)
		})
}

// ErrSessionEnded fails a unit that issued something for a session that
// had ended (QueueAssertLive): the token endpoint answers invalid_grant.
var ErrSessionEnded = errors.New("sessions: the SSO session has ended")

// nullUUID passes a malformed sid as NULL, which names no session, instead
// of failing the statement.
func nullUUID(s string) *string {
	if !isUUID(s) {
		return nil
	}
	return &s
}

// interval spells d for PostgreSQL, whose interval parser does not know
// every unit Go prints ("µs").
func interval(d time.Duration) string {
	return fmt.Sprintf("%d microseconds", d.Microseconds())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// QueueStepUp queues in the unit in ctx the upgrade of a live session after
// a second factor: new authentication methods, class and auth_time, and a
// fresh cookie value (set on w when the unit sends it), so a value seen
// before the stronger sign-in is worthless. The sid and the apps stay. The
// unit fails with ErrNoSession when the session has ended.
func (m *Manager) QueueStepUp(ctx context.Context, w http.ResponseWriter, sid, userID string, amr []string, acr string) {
	token := NewToken()
	now := m.Now().UTC().Truncate(time.Second)
	var secondFactorAt *time.Time
	if MultiFactorACR(acr) {
		secondFactorAt = &now
	}
	unit(ctx).Queue(`
		UPDATE sso_sessions SET cookie_hash = $3, amr = $4, acr = $5, auth_time = $6, last_seen_at = $6,
			second_factor_at = $7
		WHERE id = $1::uuid AND user_id = $2::uuid AND revoked_at IS NULL
		RETURNING remember, absolute_expires_at`,
		nullUUID(sid), nullUUID(userID), HashToken(token), amr, acr, now, secondFactorAt).
		Row(func(row pgx.Row) error {
			var remember bool
			var absolute time.Time
			err := row.Scan(&remember, &absolute)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNoSession
			}
			if err != nil {
				return fmt.Errorf("sessions: step up: %w", err)
			}
			m.setCookie(w, token, remember, absolute)
			return nil
		})
}

// StepUp is QueueStepUp as a unit of its own.
func (m *Manager) StepUp(ctx context.Context, w http.ResponseWriter, sid, userID string, amr []string, acr string) error {
	return db.Pipelined(ctx, m.Pool, func(ctx context.Context) error {
		m.QueueStepUp(ctx, w, sid, userID, amr, acr)
		return nil
	})
}
