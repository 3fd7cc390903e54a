package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mail"
	"github.com/idp/idp/internal/throttle"
	"github.com/idp/idp/internal/users"
)

// Self-registration (IDP_SELF_SIGNUP): a person gives an address on an
// allowed domain, a name and a password; a link is mailed; the account is
// made, its address verified, only when the link is confirmed. An address
// that has an account gets the same answer and nothing is stored or sent,
// so the form says nothing about who has one.

// SignupPath is where a sign-up's link leads.
const SignupPath = "/signup/confirm"

// SignupLifetime is how long a sign-up's link works.
const SignupLifetime = 24 * time.Hour

// ActionSelfSignup is the audit action of an account made by its owner.
const ActionSelfSignup = "users.self_signup"

// ErrDomain: the address is not on a domain sign-up allows (the list is
// no secret: the form names it).
var ErrDomain = errors.New("verify: sign-up is not open to that domain")

// ThrottledError: too many sign-ups from this client address.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("verify: too many sign-ups, retry in %s", e.RetryAfter)
}

// Signups runs self-registration.
type Signups struct {
	Pool   *pgxpool.Pool
	Users  *users.Store
	Mailer *mail.Mailer
	// Domains are the address domains allowed (lower case); empty allows
	// none.
	Domains []string
	// Clients throttles sign-ups per client address.
	Clients *throttle.Limiter
	Now     func() time.Time
}

// SignupLimiter: ten sign-ups an hour from one client address, then a
// wait doubling from a minute to an hour.
func SignupLimiter(pool *pgxpool.Pool, now func() time.Time) *throttle.Limiter {
	return &throttle.Limiter{Pool: pool, Now: now, Free: 9, Base: time.Minute, Max: time.Hour, Window: time.Hour}
}

// Allowed reports whether email's domain may sign up.
func (s *Signups) Allowed(email string) bool {
	at := strings.LastIndexByte(email, '@')
	return at >= 0 && slices.Contains(s.Domains, strings.ToLower(email[at+1:]))
}

// Request signs up email. Errors the person can act on:
// users.ErrInvalidEmail, users.ErrInvalidName, ErrDomain, a
// *users.PolicyError, *ThrottledError; an address with an account gets
// nil, as any other.
func (s *Signups) Request(ctx context.Context, email, name, password, clientAddr string) error {
	email, err := users.NormalizeEmail(email)
	if err != nil {
		return err
	}
	if !s.Allowed(email) {
		return ErrDomain
	}
	if len([]rune(name)) > users.MaxNameRunes {
		return users.ErrInvalidName
	}
	p, err := s.Users.ChoosePassword(ctx, password)
	if err != nil {
		return err
	}
	var throttled time.Duration
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		rc := s.Clients.QueueReserve(ctx, []string{"signup-" + users.AddressKey(clientAddr)}, nil)
		if err := u.Send(ctx); err != nil {
			return err
		}
		if throttled = rc.Wait(); throttled > 0 {
			return errThrottled
		}
		q := db.Conn(ctx, s.Pool)
		var taken bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1))`, email).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return nil
		}
		now := s.Now()
		token, hash := mail.NewLinkToken()
		if _, err := q.Exec(ctx, `INSERT INTO signups (token_hash, email, name, password_hash, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, hash, email, strings.TrimSpace(name), p.Hash(), now, now.Add(SignupLifetime)); err != nil {
			return err
		}
		return s.Mailer.Queue(ctx, "", mail.Action{Kind: mail.KindConfirmSignup, To: email, Name: name, Path: SignupPath,
			Token: token, Expires: SignupLifetime})
	})
	if errors.Is(err, errThrottled) {
		return &ThrottledError{RetryAfter: throttled}
	}
	if err != nil {
		return fmt.Errorf("verify: sign up: %w", err)
	}
	return nil
}

var errThrottled = errors.New("verify: throttled")

// CheckSignup reports the address of token's sign-up if its link works
// now, without using it.
func (s *Signups) CheckSignup(ctx context.Context, token string) (string, error) {
	email, _, _, err := s.findSignup(ctx, token, false)
	return email, err
}

// ConfirmSignup uses the link and makes the account, its address
// verified, audited, in one transaction. ErrTaken when the address has an
// account by now.
func (s *Signups) ConfirmSignup(ctx context.Context, token string) (users.User, error) {
	var u users.User
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		email, name, hash, err := s.findSignup(ctx, token, true)
		if err != nil {
			return err
		}
		if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `UPDATE signups SET used_at = $2 WHERE token_hash = $1`,
			mail.HashToken(token), s.Now()); err != nil {
			return err
		}
		if u, err = s.Users.CreateVerified(ctx, email, name, users.ChosenPassword(hash)); err != nil {
			return err
		}
		return audit.Record(ctx, s.Now(), audit.User(u.ID), ActionSelfSignup, u.ID, nil)
	})
	if errors.Is(err, users.ErrEmailTaken) || db.IsUniqueViolation(err) {
		return users.User{}, ErrTaken
	}
	if err != nil && !isLinkError(err) {
		return users.User{}, fmt.Errorf("verify: confirm sign-up: %w", err)
	}
	return u, err
}

func (s *Signups) findSignup(ctx context.Context, token string, lock bool) (email, name, hash string, err error) {
	if token == "" || len(token) > 128 {
		return "", "", "", ErrUnknownLink
	}
	q := `SELECT email, name, password_hash, expires_at, used_at FROM signups WHERE token_hash = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	var expires time.Time
	var used *time.Time
	err = db.Conn(ctx, s.Pool).QueryRow(ctx, q, mail.HashToken(token)).Scan(&email, &name, &hash, &expires, &used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", "", "", ErrUnknownLink
	case err != nil:
		return "", "", "", fmt.Errorf("verify: find sign-up: %w", err)
	case used != nil:
		return "", "", "", ErrUsedLink
	case !s.Now().Before(expires):
		return "", "", "", ErrExpiredLink
	}
	return email, name, hash, nil
}

// SignupSweeps are the janitor's for sign-ups: a day past expiry, with the
// password hash of one never confirmed.
var SignupSweeps = []db.Sweep{
	{Table: "signups", Key: "token_hash", Due: "expires_at < $1", Keep: 24 * time.Hour},
}
