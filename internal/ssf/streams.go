package ssf

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/secrets"
)

// Delivery methods (SSF 1.0 §6.1.1).
const (
	DeliveryPush = "urn:ietf:rfc:8935"
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// Stream statuses (SSF 1.0 §8.1.2). A paused stream holds its events
// until it is enabled again; a disabled one gets none, and those it held
// are dropped.
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// ValidStatus says whether s is one of the stream statuses, as a status
// change asks for or a stream-updated event reports.
func ValidStatus(s string) bool {
	return s == StatusEnabled || s == StatusPaused || s == StatusDisabled
}

// SecretPurpose is the purpose of the box that seals push streams'
// authorization headers: secrets.New(serverSecret, SecretPurpose).
const SecretPurpose = "ssf-push-authorization"

// Limits on what a receiver may store: far above any real configuration.
const (
	maxDescription = 1000
	maxURL         = 2000
	maxAuthHeader  = 4000
	maxSubjects    = 100000
)

var (
	// ErrNotFound means the caller has no stream with that id.
	ErrNotFound = errors.New("ssf: no such stream")
	// ErrExists means the receiver already has its one stream.
	ErrExists = errors.New("ssf: the receiver already has a stream")
)

// InvalidError is a request the receiver must correct; its message says
// how.
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string { return "ssf: " + e.Message }

// storable reports whether PostgreSQL can store s as text (and jsonb):
// valid UTF-8 without NUL.
func storable(s ...string) bool {
	for _, v := range s {
		if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return &InvalidError{Message: fmt.Sprintf(format, args...)}
}

// Stream is one receiver's event stream.
type Stream struct {
	ID       string
	ClientID string
	Method   string
	// EndpointURL is where a push stream's events go.
	EndpointURL string
	// AuthorizationHeader is the Authorization header a push stream's
	// events carry to EndpointURL, if the receiver gave one.
	AuthorizationHeader string
	EventsRequested     []string
	Description         string
	Status              string
	StatusReason        string
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// EventsDelivered is the intersection of what the stream requested and
// what this transmitter sends.
func (s Stream) EventsDelivered() []string {
	var out []string
	for _, e := range EventsSupported() {
		if slices.Contains(s.EventsRequested, e) {
			out = append(out, e)
		}
	}
	return out
}

// Config is what a receiver says about its stream; a nil field is one it
// did not send.
type Config struct {
	Method              *string
	EndpointURL         *string
	AuthorizationHeader *string
	EventsRequested     *[]string
	Description         *string
}

// Store keeps streams and their subjects in PostgreSQL.
type Store struct {
	Pool *pgxpool.Pool
	// Box seals push streams' authorization headers.
	Box *secrets.Box
	// AllowPrivate lets push endpoints be on this host or a private
	// network (IDP_ALLOW_PRIVATE_BACKCHANNEL), as for logout URIs.
	AllowPrivate bool
	Now          func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// apply checks c and sets what it says on st. With replace, what c omits
// returns to its default (PUT); otherwise it is kept (PATCH, and POST on
// a new stream).
func (s *Store) apply(st *Stream, c Config, replace bool) error {
	if replace {
		*st = Stream{ID: st.ID, ClientID: st.ClientID, Status: st.Status, StatusReason: st.StatusReason,
			CreatedAt: st.CreatedAt, EventsRequested: EventsSupported()}
	}
	if c.Method != nil {
		st.Method = *c.Method
	}
	switch st.Method {
	case DeliveryPush:
	case DeliveryPoll:
		if c.EndpointURL != nil && *c.EndpointURL != "" {
			return invalid("delivery.endpoint_url is the transmitter's to set for poll delivery (%s); leave it out", DeliveryPoll)
		}
		st.EndpointURL, st.AuthorizationHeader = "", ""
	case "":
		return invalid("delivery.method is required: %s (push) or %s (poll)", DeliveryPush, DeliveryPoll)
	default:
		return invalid("delivery.method %q is not supported: use %s (push) or %s (poll)", st.Method, DeliveryPush, DeliveryPoll)
	}
	if st.Method == DeliveryPush {
		if c.EndpointURL != nil {
			st.EndpointURL = strings.TrimSpace(*c.EndpointURL)
		}
		if why := s.checkEndpoint(st.EndpointURL); why != "" {
			return invalid("delivery.endpoint_url %s", why)
		}
		if c.AuthorizationHeader != nil {
			st.AuthorizationHeader = *c.AuthorizationHeader
		}
		if len(st.AuthorizationHeader) > maxAuthHeader || strings.ContainsAny(st.AuthorizationHeader, "\r\n\x00") {
			return invalid("delivery.authorization_header must be one line of at most %d bytes", maxAuthHeader)
		}
	}
	if c.EventsRequested != nil {
		seen := map[string]bool{}
		st.EventsRequested = []string{}
		for _, e := range *c.EventsRequested {
			if len(e) > maxURL {
				return invalid("an events_requested entry is longer than %d bytes", maxURL)
			}
			// An event this transmitter does not send is not an error
			// (SSF §8.1.1: events_delivered is the intersection), but
			// only what it sends is kept.
			if slices.Contains(EventsSupported(), e) && !seen[e] {
				seen[e] = true
				st.EventsRequested = append(st.EventsRequested, e)
			}
		}
		if len(*c.EventsRequested) > 50 {
			return invalid("events_requested lists more than 50 events")
		}
	}
	if c.Description != nil {
		st.Description = *c.Description
	}
	if !storable(st.Description, st.EndpointURL, st.AuthorizationHeader) {
		return invalid("description and delivery must be valid UTF-8 text without NUL characters")
	}
	if len(st.Description) > maxDescription {
		return invalid("description is longer than %d bytes", maxDescription)
	}
	return nil
}

// checkEndpoint says what is wrong with a push endpoint, or "".
func (s *Store) checkEndpoint(raw string) string {
	if raw == "" {
		return "is required for push delivery"
	}
	if len(raw) > maxURL {
		return fmt.Sprintf("is longer than %d bytes", maxURL)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "must be an absolute https URL"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not contain a fragment"
	case u.User != nil:
		return "must not contain user information"
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return "must use https (http is allowed only for localhost)"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must use https"
	case !s.AllowPrivate && netguard.InternalHost(u.Hostname()):
		return "is on this host or a private network, which this provider does not deliver to (IDP_ALLOW_PRIVATE_BACKCHANNEL)"
	}
	return ""
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Create makes clientID's stream from c. Events requested default to every
// event this transmitter sends.
func (s *Store) Create(ctx context.Context, clientID string, c Config) (Stream, error) {
	now := s.now()
	st := Stream{ID: rand.Text(), ClientID: clientID, Status: StatusEnabled, CreatedAt: now, UpdatedAt: now,
		EventsRequested: EventsSupported()}
	if err := s.apply(&st, c, false); err != nil {
		return Stream{}, err
	}
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		_, err := db.Conn(ctx, s.Pool).Exec(ctx, `
			INSERT INTO ssf_streams (id, client_id, delivery_method, endpoint_url, authorization_header_encrypted,
				events_requested, description, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
			st.ID, clientID, st.Method, st.EndpointURL, s.seal(st), st.EventsRequested, st.Description, st.Status, now)
		if db.IsUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		return s.record(ctx, clientID, "ssf.stream_create", st, nil)
	})
	if err != nil {
		return Stream{}, fmt.Errorf("ssf: create stream: %w", err)
	}
	return st, nil
}

func (s *Store) seal(st Stream) []byte {
	if st.AuthorizationHeader == "" {
		return nil
	}
	return s.Box.Seal([]byte(st.AuthorizationHeader), []byte(st.ID))
}

// record writes an audit entry about a stream its receiver changed, in
// the transaction in ctx.
func (s *Store) record(ctx context.Context, clientID, action string, st Stream, extra map[string]any) error {
	return s.recordBy(ctx, audit.Client(clientID), action, st, extra)
}

// recordBy is record for a change made by actor; the target is always the
// receiver.
func (s *Store) recordBy(ctx context.Context, actor, action string, st Stream, extra map[string]any) error {
	details := map[string]any{"stream_id": st.ID, "delivery_method": st.Method, "status": st.Status}
	for k, v := range extra {
		details[k] = v
	}
	return audit.Record(ctx, s.now(), actor, action, audit.Client(st.ClientID), details)
}

const streamColumns = `id, client_id, delivery_method, endpoint_url, authorization_header_encrypted,
	events_requested, description, status, status_reason, created_at, updated_at`

func (s *Store) scan(row pgx.Row) (Stream, error) {
	var st Stream
	var sealed []byte
	err := row.Scan(&st.ID, &st.ClientID, &st.Method, &st.EndpointURL, &sealed, &st.EventsRequested,
		&st.Description, &st.Status, &st.StatusReason, &st.CreatedAt, &st.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Stream{}, ErrNotFound
	}
	if err != nil {
		return Stream{}, err
	}
	if sealed != nil {
		plain, err := s.Box.Open(sealed, []byte(st.ID))
		if err != nil {
			return Stream{}, fmt.Errorf("ssf: open the authorization header of stream %s: %w", st.ID, err)
		}
		st.AuthorizationHeader = string(plain)
	}
	return st, nil
}

// Get returns clientID's stream; with streamID "" whichever it has.
// Another client's stream is ErrNotFound, as is no stream.
func (s *Store) Get(ctx context.Context, clientID, streamID string) (Stream, error) {
	st, err := s.get(ctx, clientID, streamID, false)
	if err != nil {
		return Stream{}, fmt.Errorf("ssf: get stream: %w", err)
	}
	return st, nil
}

func (s *Store) get(ctx context.Context, clientID, streamID string, lock bool) (Stream, error) {
	if !storable(streamID) {
		return Stream{}, ErrNotFound // names no stream
	}
	q := `SELECT ` + streamColumns + ` FROM ssf_streams WHERE client_id = $1 AND ($2 = '' OR id = $2)`
	if lock {
		q += ` FOR UPDATE`
	}
	return s.scan(db.Conn(ctx, s.Pool).QueryRow(ctx, q, clientID, streamID))
}

// ByID returns a stream whoever owns it: for delivery.
func (s *Store) ByID(ctx context.Context, streamID string) (Stream, error) {
	return s.scan(db.Conn(ctx, s.Pool).QueryRow(ctx, `SELECT `+streamColumns+` FROM ssf_streams WHERE id = $1`, streamID))
}

// Update changes clientID's stream streamID as c says: only what c sets
// (PATCH), or everything, what c omits returning to its default (replace,
// PUT).
func (s *Store) Update(ctx context.Context, clientID, streamID string, c Config, replace bool) (Stream, error) {
	var st Stream
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		var err error
		if st, err = s.get(ctx, clientID, streamID, true); err != nil {
			return err
		}
		if err := s.apply(&st, c, replace); err != nil {
			return err
		}
		st.UpdatedAt = s.now()
		_, err = db.Conn(ctx, s.Pool).Exec(ctx, `
			UPDATE ssf_streams SET delivery_method = $2, endpoint_url = $3, authorization_header_encrypted = $4,
				events_requested = $5, description = $6, updated_at = $7
			WHERE id = $1`, st.ID, st.Method, st.EndpointURL, s.seal(st), st.EventsRequested, st.Description, st.UpdatedAt)
		if err != nil {
			return err
		}
		return s.record(ctx, clientID, "ssf.stream_update", st, nil)
	})
	if err != nil {
		return Stream{}, fmt.Errorf("ssf: update stream: %w", err)
	}
	return st, nil
}

// Delete removes clientID's stream streamID and its subjects.
func (s *Store) Delete(ctx context.Context, clientID, streamID string) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		st, err := s.get(ctx, clientID, streamID, true)
		if err != nil {
			return err
		}
		if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `DELETE FROM ssf_streams WHERE id = $1`, st.ID); err != nil {
			return err
		}
		if err := failEvents(ctx, s.Pool, clientID, s.now(), "the stream was deleted"); err != nil {
			return err
		}
		return s.record(ctx, clientID, "ssf.stream_delete", st, nil)
	})
	if err != nil {
		return fmt.Errorf("ssf: delete stream: %w", err)
	}
	return nil
}

// SetStatus sets the stream's status, as its receiver asked. A paused
// stream holds its events (outbox.Hold: no attempt until it is enabled); a
// disabled one gets no new ones, and those it held fail; enabling releases
// those a pause held.
func (s *Store) SetStatus(ctx context.Context, clientID, streamID, status, reason string) (Stream, error) {
	st, err := s.setStatus(ctx, status, reason, audit.Client(clientID), false, func(ctx context.Context) (Stream, error) {
		return s.get(ctx, clientID, streamID, true)
	})
	if err != nil {
		return Stream{}, fmt.Errorf("ssf: set stream status: %w", err)
	}
	return st, nil
}

// ChangeStatus is the transmitter's own change of a stream's status (an
// administrator's, actor in the audit log): as SetStatus, and the
// receiver is told with a stream-updated event, which a pause does not
// hold nor a disabling drop, since it is about the stream itself. Setting
// the status and reason the stream has changes nothing.
func (s *Store) ChangeStatus(ctx context.Context, streamID, status, reason, actor string) (Stream, error) {
	st, err := s.setStatus(ctx, status, reason, actor, true, func(ctx context.Context) (Stream, error) {
		if !storable(streamID) {
			return Stream{}, ErrNotFound // names no stream
		}
		return s.scan(db.Conn(ctx, s.Pool).QueryRow(ctx, `SELECT `+streamColumns+` FROM ssf_streams WHERE id = $1 FOR UPDATE`, streamID))
	})
	if err != nil {
		return Stream{}, fmt.Errorf("ssf: change stream status: %w", err)
	}
	return st, nil
}

func (s *Store) setStatus(ctx context.Context, status, reason, actor string, tell bool, lock func(context.Context) (Stream, error)) (Stream, error) {
	if !ValidStatus(status) {
		return Stream{}, invalid("status must be enabled, paused or disabled")
	}
	if len(reason) > maxDescription || !storable(reason) {
		return Stream{}, invalid("reason must be valid UTF-8 text of at most %d bytes, without NUL characters", maxDescription)
	}
	var st Stream
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		var err error
		if st, err = lock(ctx); err != nil {
			return err
		}
		from := st.Status
		if tell && from == status && st.StatusReason == reason {
			return nil
		}
		st.Status, st.StatusReason, st.UpdatedAt = status, reason, s.now()
		if _, err := db.Conn(ctx, s.Pool).Exec(ctx, `
			UPDATE ssf_streams SET status = $2, status_reason = $3, updated_at = $4 WHERE id = $1`,
			st.ID, st.Status, st.StatusReason, st.UpdatedAt); err != nil {
			return err
		}
		switch {
		case status == StatusDisabled && from != StatusDisabled:
			if err := failEvents(ctx, s.Pool, st.ClientID, st.UpdatedAt, "the stream was disabled"); err != nil {
				return err
			}
		case status == StatusPaused && from != StatusPaused:
			if err := holdEvents(ctx, s.Pool, st); err != nil {
				return err
			}
		case status == StatusEnabled && from == StatusPaused:
			if err := releaseEvents(ctx, s.Pool, st); err != nil {
				return err
			}
		}
		if tell {
			// Queued after the hold or the failing above, which it must
			// escape.
			if err := outbox.Queue(ctx, s.Pool, st.UpdatedAt, outbox.Message{Kind: kindOf(st.Method), ClientID: st.ClientID,
				Reason: EventStreamUpdated, Payload: message{StreamID: st.ID,
					SET: newSET(st.UpdatedAt, Opaque(st.ID), StreamUpdated(status, reason), "")}}); err != nil {
				return err
			}
		}
		return s.recordBy(ctx, actor, "ssf.stream_status", st, map[string]any{"from": from, "reason": reason})
	})
	return st, err
}

// ErrNotEnabled means a stream is paused or disabled, so its events
// cannot be retried now.
var ErrNotEnabled = errors.New("ssf: the stream is not enabled")

// RetryNow makes every undelivered event of the stream due at once — those
// waiting out a backoff, and those failed or given up on — and records it
// with actor: an administrator's "retry now" once a receiver is fixed. A
// poll stream's failed events are offered again. A paused or disabled
// stream is ErrNotEnabled: enabling it is what delivers (or, once
// disabled, allows retrying) its events. It returns how many it retried.
func (s *Store) RetryNow(ctx context.Context, streamID, actor string) (int, error) {
	if !storable(streamID) {
		return 0, fmt.Errorf("ssf: retry stream: %w", ErrNotFound) // names no stream
	}
	var n int
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		// Locked, so no status change slips in between the check and the
		// retry.
		var st Stream
		err := db.Conn(ctx, s.Pool).QueryRow(ctx, `SELECT id, client_id, delivery_method, status FROM ssf_streams WHERE id = $1 FOR UPDATE`,
			streamID).Scan(&st.ID, &st.ClientID, &st.Method, &st.Status)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if st.Status != StatusEnabled {
			return ErrNotEnabled
		}
		if n, err = outbox.RetryAll(ctx, s.Pool, events(st)); err != nil {
			return err
		}
		return s.recordBy(ctx, actor, "ssf.stream_retry", st, map[string]any{"events": n})
	})
	if err != nil {
		return 0, fmt.Errorf("ssf: retry stream %s: %w", streamID, err)
	}
	return n, nil
}

// subjectKey normalises a subject for matching, or says why it cannot be
// on a stream. Only people are subjects here: email and iss_sub of this
// issuer.
func subjectKey(sub Subject, issuer string) (string, error) {
	if err := sub.Validate(); err != nil {
		return "", invalid("%s", strings.TrimPrefix(err.Error(), "ssf: "))
	}
	if !storable(sub.Format, sub.Email, sub.Iss, sub.Sub, sub.ID) {
		return "", invalid("subject members must be valid UTF-8 text without NUL characters")
	}
	switch sub.Format {
	case FormatEmail:
		if len(sub.Email) > 320 {
			return "", invalid("subject.email is longer than 320 bytes")
		}
		return "email:" + strings.ToLower(strings.TrimSpace(sub.Email)), nil
	case FormatIssSub:
		if sub.Iss != issuer {
			return "", invalid("subject.iss must be this transmitter's issuer, %s", issuer)
		}
		if len(sub.Sub) > 200 {
			return "", invalid("subject.sub is longer than 200 bytes")
		}
		return "iss_sub:" + sub.Iss + " " + sub.Sub, nil
	}
	return "", invalid("subject format %s is not one of email and iss_sub", sub.Format)
}

// SetSubject adds (included) or removes (not included) a subject on
// clientID's stream. Whether the subject names a user is not checked, nor
// said: a receiver learns nothing of who has an account here.
func (s *Store) SetSubject(ctx context.Context, clientID, streamID, issuer string, sub Subject, included bool) error {
	key, err := subjectKey(sub, issuer)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(sub)
	if err != nil {
		return err
	}
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		st, err := s.get(ctx, clientID, streamID, true)
		if err != nil {
			return err
		}
		tx := db.Conn(ctx, s.Pool)
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ssf_stream_subjects WHERE stream_id = $1`, st.ID).Scan(&n); err != nil {
			return err
		}
		if n >= maxSubjects {
			return invalid("the stream has %d subjects, the most it may have", maxSubjects)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO ssf_stream_subjects (stream_id, subject_key, subject, included, created_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (stream_id, subject_key) DO UPDATE SET subject = $3, included = $4, created_at = $5`,
			st.ID, key, raw, included, s.now()); err != nil {
			return err
		}
		action := "ssf.subject_add"
		if !included {
			action = "ssf.subject_remove"
		}
		// The subject itself is personal data the audit log need not hold.
		return s.record(ctx, clientID, action, st, map[string]any{"subject_format": sub.Format})
	})
	if err != nil {
		return fmt.Errorf("ssf: subject: %w", err)
	}
	return nil
}
