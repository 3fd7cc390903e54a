package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
)

// Device authorization requests (RFC 8628), in oauth_device_codes
// (migrations/0017). fosite v0.49.0 has no device grant: package sso's
// handlers call these methods, and the tokens issued from an approved
// request go into the ordinary token tables with the approving session's
// sid, so everything that revokes a session's tokens covers them.

// Device request states.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceUsed     = "used"
)

var (
	// ErrUserCodeTaken: a new request's user code collides with a stored
	// one; the caller draws another.
	ErrUserCodeTaken = errors.New("store: user code already in use")
	// ErrDeviceUsed fails a unit that spent a device request another poll
	// spent first (QueueUseDevice): the token endpoint answers
	// invalid_grant.
	ErrDeviceUsed = errors.New("store: the device code has been used")
)

// NewDevice is a device authorization request to store. The codes are
// their hashes (HashSignature).
type NewDevice struct {
	DeviceCodeHash, UserCodeHash []byte
	ClientID                     string
	Scopes, Audience             []string
	CreatedAt, ExpiresAt         time.Time
	Interval                     time.Duration
}

// Device is a stored device authorization request.
type Device struct {
	ClientID         string
	Scopes, Audience []string
	ExpiresAt        time.Time
	Status           string
	// Set once approved.
	SID, Subject  string
	GrantedScopes []string
}

// CreateDevice stores a new device authorization request at once (it is
// the whole of its request's work).
func (s *Store) CreateDevice(ctx context.Context, d NewDevice) error {
	_, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		INSERT INTO oauth_device_codes (device_code_hash, user_code_hash, client_id, scopes, audience, created_at, expires_at, poll_interval)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		d.DeviceCodeHash, d.UserCodeHash, d.ClientID, nonNil(d.Scopes), nonNil(d.Audience), d.CreatedAt, d.ExpiresAt,
		int(d.Interval/time.Second))
	if db.IsUniqueViolation(err) {
		return ErrUserCodeTaken
	}
	if err != nil {
		return dbErr("create device code", err)
	}
	return nil
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// PendingDevice returns the request whose user code hashes to userCodeHash
// if it still waits for a decision and has not expired; fosite.ErrNotFound
// otherwise (a wrong code and a stale one look alike to whoever typed it).
func (s *Store) PendingDevice(ctx context.Context, userCodeHash []byte) (Device, error) {
	var d Device
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, `
		SELECT client_id, scopes, audience, expires_at, status FROM oauth_device_codes
		WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2`, userCodeHash, s.now()).
		Scan(&d.ClientID, &d.Scopes, &d.Audience, &d.ExpiresAt, &d.Status)
	if err != nil {
		return Device{}, dbErr("get device code", err)
	}
	return d, nil
}

// Decision is a person's answer to a device authorization request.
type Decision struct {
	UserCodeHash []byte
	Approve      bool
	// With Approve: the approving session, its user, what is granted, and
	// the fosite session the tokens are issued with.
	SID, Subject  string
	GrantedScopes []string
	Session       fosite.Session
}

// QueueDecide queues in the unit in ctx the decision on a pending request.
// It fails the unit with fosite.ErrNotFound when the request is no longer
// pending (decided in another tab, or expired meanwhile), and an approval
// also with sessions.ErrSessionEnded when the approving session has ended:
// it holds the session's share lock, like a code's issuance.
func (s *Store) QueueDecide(ctx context.Context, d Decision) error {
	u, err := unit(ctx, "decide device code")
	if err != nil {
		return err
	}
	now := s.now()
	if !d.Approve {
		u.Queue(`
			WITH u AS (UPDATE oauth_device_codes SET status = 'denied', decided_at = $2
				WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2 RETURNING 1)
			SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'device code not pending')`, d.UserCodeHash, now).
			MapErr(notPending)
		return nil
	}
	doc, err := json.Marshal(d.Session)
	if err != nil {
		return fmt.Errorf("store: decide device code: marshal session: %w", err)
	}
	sessions.AssertLive(u, d.SID, now)
	u.Queue(`
		WITH u AS (UPDATE oauth_device_codes SET status = 'approved', decided_at = $2, sid = $3::uuid, subject = $4,
				granted_scopes = $5, session = $6
			WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2 RETURNING 1)
		SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'device code not pending')`,
		d.UserCodeHash, now, d.SID, d.Subject, nonNil(d.GrantedScopes), doc).
		MapErr(notPending)
	return nil
}

func notPending(err error) error {
	if db.IsAssertFailure(err) {
		return fmt.Errorf("store: decide device code: %w", fosite.ErrNotFound)
	}
	return dbErr("decide device code", err)
}

// Poll is what a device's poll of the token endpoint finds.
type Poll struct {
	Device
	// TooFast: this poll came sooner than the interval after the previous
	// one; the interval has grown by 5 seconds (RFC 8628 §3.5 slow_down).
	TooFast bool
	// Expired: the request's lifetime had passed when it was polled.
	Expired bool
}

// PollDevice records a poll of the request under deviceCodeHash and
// returns it; an approved one's fosite session is decoded into proto.
// fosite.ErrNotFound for an unknown code.
//
// It runs at once, outside the request's unit: the time of a poll must be
// kept whatever the poll's outcome, and reading and recording it in one
// statement (under the row's lock) lets two instances polled at the same
// moment agree on which poll was too fast. A poll less than four fifths of
// the interval after the previous one is too fast: network jitter on a
// client that waits exactly the interval is not.
func (s *Store) PollDevice(ctx context.Context, deviceCodeHash []byte, proto fosite.Session) (Poll, error) {
	var (
		p   Poll
		sid *string
		doc []byte
	)
	now := s.now()
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, `
		WITH prev AS (
			SELECT device_code_hash, status = 'pending' AND last_polled_at IS NOT NULL
				AND $2 < last_polled_at + make_interval(secs => poll_interval * 0.8) AS too_fast
			FROM oauth_device_codes WHERE device_code_hash = $1 FOR UPDATE
		)
		UPDATE oauth_device_codes d SET last_polled_at = $2,
			poll_interval = CASE WHEN prev.too_fast THEN d.poll_interval + 5 ELSE d.poll_interval END
		FROM prev WHERE d.device_code_hash = prev.device_code_hash
		RETURNING d.client_id, d.scopes, d.audience, d.expires_at, d.status, d.sid::text, d.subject, d.granted_scopes,
			d.session, prev.too_fast`, deviceCodeHash, now).
		Scan(&p.ClientID, &p.Scopes, &p.Audience, &p.ExpiresAt, &p.Status, &sid, &p.Subject, &p.GrantedScopes, &doc, &p.TooFast)
	if err != nil {
		return Poll{}, dbErr("poll device code", err)
	}
	if sid != nil {
		p.SID = *sid
	}
	p.Expired = !now.Before(p.ExpiresAt)
	if p.Status == DeviceApproved && proto != nil {
		if err := json.Unmarshal(doc, proto); err != nil {
			return Poll{}, fmt.Errorf("store: poll device code: decode session: %w", err)
		}
	}
	return p, nil
}

// QueueUseDevice queues in the unit in ctx the spending of an approved
// request, before the tokens issued from it: the approving session must
// still be live (held under its share lock until the unit commits, as a
// code's exchange holds it, so a revocation either comes first and the
// poll fails with sessions.ErrSessionEnded, or waits and then revokes these
// tokens too), and the request must still be approved, so two concurrent
// polls get one set of tokens (the loser fails with ErrDeviceUsed).
func (s *Store) QueueUseDevice(ctx context.Context, deviceCodeHash []byte) error {
	u, err := unit(ctx, "use device code")
	if err != nil {
		return err
	}
	u.Queue(`SELECT idp_assert(EXISTS (`+sessions.LiveSQL("d.sid", "$2")+`), 'session ended')
		FROM oauth_device_codes d WHERE d.device_code_hash = $1`, deviceCodeHash, s.now()).
		MapErr(sessionEnded("use device code"))
	u.Queue(`
		WITH u AS (UPDATE oauth_device_codes SET status = 'used', session = NULL
			WHERE device_code_hash = $1 AND status = 'approved' RETURNING 1)
		SELECT idp_assert(EXISTS (SELECT 1 FROM u), 'device code used')`, deviceCodeHash).
		MapErr(func(err error) error {
			if db.IsAssertFailure(err) {
				return fmt.Errorf("store: use device code: %w", ErrDeviceUsed)
			}
			return dbErr("use device code", err)
		})
	return nil
}
