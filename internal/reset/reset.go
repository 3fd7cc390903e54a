// Package reset owns self-service password reset links: asking for one
// (the same answer after the same work whether or not the address has an
// account: the request only queues the address, and a worker looks the
// account up; throttled per address asked about and per client address),
// the link's row (token hashed, 30 minutes, single use, bound to the
// password it was mailed for), and redeeming it.
//
// Redeeming a link proves only that the person reads the account's mail.
// What comes after — the second factor when the account has one, the new
// password, the end of every other session — is the sign-in's (package
// login), so an email alone never takes over a two-factor account.
package reset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/throttle"
	"github.com/idp/idp/internal/users"
)

// LinkLifetime is how long a reset link works.
const LinkLifetime = 30 * time.Minute

// LinkPath is where a reset link leads (GET shows a page, POST redeems).
const LinkPath = "/login/reset"

var (
	// ErrUnknownLink: no link has this token (mistyped, tampered, or
	// cleaned up long after it expired).
	ErrUnknownLink = errors.New("reset: unknown link")
	ErrUsedLink    = errors.New("reset: link already used")
	ErrExpiredLink = errors.New("reset: link expired")
	// ErrStaleLink: the password changed after the link was mailed.
	ErrStaleLink = errors.New("reset: the password changed since the link was sent")
)

// ThrottledError: too many links were asked for this address, or from
// this client address; nothing was sent.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("reset: too many requests, retry in %s", e.RetryAfter)
}

// Service issues and redeems reset links.
type Service struct {
	Pool   *pgxpool.Pool
	Mailer *mail.Mailer
	// Accounts counts requests per address asked about (AccountLimiter);
	// Clients per client address (ClientLimiter).
	Accounts, Clients *throttle.Limiter
	Now               func() time.Time
}

// New returns a Service with the default throttles.
func New(pool *pgxpool.Pool, m *mail.Mailer, now func() time.Time) *Service {
	return &Service{Pool: pool, Mailer: m, Accounts: AccountLimiter(pool, now), Clients: ClientLimiter(pool, now), Now: now}
}

// AccountLimiter throttles the links asked for one address: three an
// hour for free, then a wait that doubles from a minute up to an hour.
// Whoever knows a person's address can at worst delay their reset by an
// hour; they cannot fill the inbox.
//
// (A Limiter's Free failures pass without delay and the next one sets
// the first wait: Free 2 lets three through.)
func AccountLimiter(pool *pgxpool.Pool, now func() time.Time) *throttle.Limiter {
	return &throttle.Limiter{Pool: pool, Now: now, Free: 2, Base: time.Minute, Max: time.Hour, Window: time.Hour}
}

// ClientLimiter throttles the links asked from one client address (or
// IPv6 /64): twenty an hour, for an office behind one NAT, then the same
// doubling wait. It bounds how many inboxes one client can mail.
func ClientLimiter(pool *pgxpool.Pool, now func() time.Time) *throttle.Limiter {
	return &throttle.Limiter{Pool: pool, Now: now, Free: 19, Base: time.Minute, Max: time.Hour, Window: time.Hour}
}

func accountKey(email string) string {
	email = strings.ToLower(email)
	return "reset-user:" + email
}

func clientKey(addr string) string { return "reset-" + users.AddressKey(addr) }

// OutboxKind is the outbox row kind of a request for a link: the request
// queues it, a worker then makes the link and queues its mail (Process).
const OutboxKind = "password_reset"

// request is the payload of an OutboxKind row: the address asked about,
// nothing more (no link exists yet).
type request struct {
	Email string `json:"email"`
}

// Request asks for a reset link for email. Whether or not an account has
// the address, it does the same work: the throttle, and one outbox row
// naming the address. The account is looked up, and the link made and
// mailed, later by a worker (Process), so neither the answer nor its
// time says whether the address has an account. clientAddr is the
// client's address for the throttle.
//
// Errors: users.ErrInvalidEmail (not an address: said as such, which
// tells nothing about accounts), *ThrottledError.
func (s *Service) Request(ctx context.Context, email, clientAddr string) error {
	email, err := users.NormalizeEmail(email)
	if err != nil {
		return err
	}
	var throttled time.Duration
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		// A refusal rolls back (errThrottled), so it counts on neither
		// key: a blocked address does not use up an office's allowance.
		rc := s.Clients.QueueReserve(ctx, []string{clientKey(clientAddr)}, nil)
		ra := s.Accounts.QueueReserve(ctx, []string{accountKey(email)}, nil)
		if err := u.Send(ctx); err != nil {
			return err
		}
		if throttled = max(rc.Wait(), ra.Wait()); throttled > 0 {
			return errThrottled
		}
		return outbox.Queue(ctx, s.Pool, s.Now(), outbox.Message{Kind: OutboxKind, Payload: request{Email: email}})
	})
	if errors.Is(err, errThrottled) {
		return &ThrottledError{RetryAfter: throttled}
	}
	if err != nil {
		return fmt.Errorf("reset: request: %w", err)
	}
	return nil
}

// Process answers a request queued at requestedAt: if an enabled account
// has the address, in one transaction it stores a new link (expiring 30
// minutes after the request, not after this moment) and queues its mail
// (mail.Mailer.Queue: the token sealed in the outbox); otherwise it does
// nothing. A request processed twice (the outbox delivers at least once)
// mails two links; each works.
func (s *Service) Process(ctx context.Context, email string, requestedAt time.Time) error {
	expires := requestedAt.Add(LinkLifetime)
	now := s.Now()
	if !now.Before(expires) {
		return nil // too late: the person has been told the link works for 30 minutes
	}
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		q := db.Conn(ctx, s.Pool)
		var userID, address, name, pwHash string
		err := q.QueryRow(ctx, `
			SELECT u.id::text, u.email, u.name, coalesce(p.hash, '') FROM users u
			LEFT JOIN password_credentials p ON p.user_id = u.id
			WHERE lower(u.email) = lower($1) AND u.disabled_at IS NULL`, email).Scan(&userID, &address, &name, &pwHash)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		token, hash := mail.NewLinkToken()
		if _, err := q.Exec(ctx, `
			INSERT INTO password_resets (token_hash, user_id, password_fingerprint, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5)`, hash, userID, mail.PasswordFingerprint(pwHash), now, expires); err != nil {
			return err
		}
		// To the address on the account, as it was registered.
		return s.Mailer.Queue(ctx, userID, mail.Action{Kind: mail.KindPasswordReset, To: address, Name: name,
			Path: LinkPath, Token: token, Expires: expires.Sub(now)})
	})
	if err != nil {
		return fmt.Errorf("reset: process: %w", err)
	}
	return nil
}

// Kind is the outbox kind that processes requests (OutboxKind): pure
// database work, retried by the outbox if the database fails.
func (s *Service) Kind() outbox.Kind {
	return outbox.Kind{
		Timeout: 10 * time.Second, Log: "password reset request",
		Send: func(ctx context.Context, j outbox.Job) outbox.Result {
			var r request
			if err := json.Unmarshal(j.Payload, &r); err != nil {
				return outbox.Result{Outcome: outbox.Failed, Error: "unreadable request"}
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.Process(ctx, r.Email, j.CreatedAt); err != nil {
				return outbox.Result{Outcome: outbox.Retrying, Error: err.Error()}
			}
			return outbox.Result{Outcome: outbox.Delivered}
		},
	}
}

var errThrottled = errors.New("reset: throttled")

// Check reports whether token names a link that works now, and whose
// account it is, without using it (the page a link opens, which mail
// scanners also fetch).
func (s *Service) Check(ctx context.Context, token string) (userID string, err error) {
	return s.find(ctx, token, false)
}

// Redeem uses the link: from now on it works no more. It returns the
// account's id. Inside the caller's transaction (db.Tx), the link is
// spent only if that commits.
func (s *Service) Redeem(ctx context.Context, token string) (userID string, err error) {
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if userID, err = s.find(ctx, token, true); err != nil {
			return err
		}
		_, err := db.Conn(ctx, s.Pool).Exec(ctx,
			`UPDATE password_resets SET used_at = $2 WHERE token_hash = $1`, mail.HashToken(token), s.Now())
		return err
	})
	return userID, err
}

// find looks the link up (locking it when lock) and judges it.
func (s *Service) find(ctx context.Context, token string, lock bool) (string, error) {
	if token == "" || len(token) > 128 {
		return "", ErrUnknownLink
	}
	q := `SELECT r.user_id::text, r.password_fingerprint, r.expires_at, r.used_at, coalesce(p.hash, ''), u.disabled_at IS NOT NULL
		FROM password_resets r JOIN users u ON u.id = r.user_id
		LEFT JOIN password_credentials p ON p.user_id = r.user_id
		WHERE r.token_hash = $1`
	if lock {
		q += ` FOR UPDATE OF r`
	}
	var userID, pwHash string
	var fingerprint []byte
	var expires time.Time
	var used *time.Time
	var disabled bool
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, q, mail.HashToken(token)).
		Scan(&userID, &fingerprint, &expires, &used, &pwHash, &disabled)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrUnknownLink
	case err != nil:
		return "", fmt.Errorf("reset: find link: %w", err)
	case used != nil:
		return "", ErrUsedLink
	case !s.Now().Before(expires):
		return "", ErrExpiredLink
	case disabled:
		// Said as unknown: a disabled account has nothing to reset.
		return "", ErrUnknownLink
	case !mail.SameFingerprint(fingerprint, mail.PasswordFingerprint(pwHash)):
		return "", ErrStaleLink
	}
	return userID, nil
}

// Sweeps are the janitor's for the reset links: a day past expiry, used
// or not (kept that long so a late click says "expired", not "unknown").
var Sweeps = []db.Sweep{
	{Table: "password_resets", Key: "token_hash", Due: "expires_at < $1", Keep: 24 * time.Hour},
}
