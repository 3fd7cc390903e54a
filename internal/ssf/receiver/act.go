package receiver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/ssf"
)

// Receiver verifies what transmitters send and acts on it.
type Receiver struct {
	Pool     *pgxpool.Pool
	Store    *Store
	Verifier *Verifier
	Sessions *sessions.Manager
	Issuer   string // ours
	Now      func() time.Time
}

func (r *Receiver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Outcome is what became of one verified SET.
type Outcome struct {
	Duplicate bool   // its jti was seen before: acknowledged, not acted on again
	UserID    string // the user it named, if any
	Acted     []string
	Ignored   map[string]string // event → why not acted on
	Stream    []string          // events about our stream taken in: a verification, a stream-updated
	Sessions  int
}

// Handle verifies raw as a SET from t and acts on it, once per jti across
// every instance: the jti is recorded in the transaction of the
// revocation, so a SET either ends the sessions and is remembered, or
// neither. A refused SET returns a *SETError and changes nothing.
func (r *Receiver) Handle(ctx context.Context, t Transmitter, raw string) (Outcome, error) {
	c, err := r.Verifier.Verify(ctx, t, raw)
	if err != nil {
		return Outcome{}, err
	}
	var out Outcome
	err = db.Tx(ctx, r.Pool, func(ctx context.Context) error {
		out = Outcome{Ignored: map[string]string{}}
		now := r.now()
		u, _ := db.From(ctx)
		tag, err := u.Exec(ctx, `INSERT INTO ssf_received (transmitter_id, jti, received_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, t.ID, c.JTI, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			out.Duplicate = true
			return nil
		}
		if out.UserID, err = r.user(ctx, u, t, c.Subject); err != nil {
			return err
		}
		act := false
		for event, body := range c.Events {
			if event == ssf.EventVerification || event == ssf.EventStreamUpdated {
				// About our stream, not a person: never acted on by revoking.
				why, err := r.streamEvent(ctx, u, t, c, event, body)
				if err != nil {
					return err
				}
				if why != "" {
					out.Ignored[event] = why
				} else {
					out.Stream = append(out.Stream, event)
				}
				continue
			}
			switch why := r.judge(t, event, body); {
			case why != "":
				out.Ignored[event] = why
			case out.UserID == "":
				out.Ignored[event] = "unknown subject"
			default:
				act = true
				out.Acted = append(out.Acted, event)
			}
		}
		slices.Sort(out.Acted)
		actor := "transmitter:" + t.Issuer
		details := map[string]any{"transmitter": t.ID, "jti": c.JTI, "events": eventNames(c.Events)}
		if len(out.Ignored) > 0 {
			details["ignored"] = out.Ignored
		}
		if len(out.Stream) > 0 {
			details["stream"] = out.Stream
		}
		target := "transmitter:" + t.ID
		if out.UserID != "" {
			target = out.UserID
		}
		if act {
			res, err := r.Sessions.Revoke(ctx, sessions.Revocation{UserID: out.UserID, Reason: sessions.ReasonSignalReceived,
				IncludeOffline: true, Actor: actor})
			if err != nil {
				return err
			}
			out.Sessions = res.Sessions
			details["sessions"] = res.Sessions
		}
		return audit.Record(ctx, now, actor, "ssf.signal_received", target, details)
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("receiver: act on %s: %w", t.ID, err)
	}
	return out, nil
}

func eventNames(events map[string]json.RawMessage) []string {
	var names []string
	for e := range events {
		names = append(names, e)
	}
	slices.Sort(names)
	return names
}

// streamEvent takes in an event about our stream, in the transaction that
// records the jti: a verification echoing the state we sent marks t
// verified (and that state spent); a stream-updated records the status it
// says, unless a later one was recorded. It says why an event was
// ignored, or "".
func (r *Receiver) streamEvent(ctx context.Context, u db.Querier, t Transmitter, c Claims, event string, body json.RawMessage) (string, error) {
	if t.StreamID != "" && (c.Subject == nil || c.Subject.Format != ssf.FormatOpaque || c.Subject.ID != t.StreamID) {
		return "not about our stream", nil
	}
	now := r.now()
	if event == ssf.EventVerification {
		var v struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal(body, &v)
		var want []byte
		if err := u.QueryRow(ctx, `SELECT verify_state_hash FROM ssf_transmitters WHERE id = $1 FOR UPDATE`, t.ID).Scan(&want); err != nil {
			return "", err
		}
		got := sha256.Sum256([]byte(v.State))
		if v.State == "" || want == nil || subtle.ConstantTimeCompare(got[:], want) != 1 {
			return "verification with a state we did not send (or no longer wait for)", nil
		}
		_, err := u.Exec(ctx, `UPDATE ssf_transmitters SET verified_at = $2, verify_state_hash = NULL WHERE id = $1`, t.ID, now)
		return "", err
	}
	var st struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &st) != nil || !ssf.ValidStatus(st.Status) {
		return "stream-updated without a status of enabled, paused or disabled", nil
	}
	if !utf8.ValidString(st.Reason) || strings.ContainsRune(st.Reason, 0) {
		st.Reason = ""
	}
	st.Reason = shorten(st.Reason, 500)
	// A stream-updated older than the one recorded (delivered late, or
	// again) does not undo it: its iat orders them.
	tag, err := u.Exec(ctx, `UPDATE ssf_transmitters SET stream_status = $2, stream_reason = $3, stream_updated_at = $4
		WHERE id = $1 AND (stream_updated_at IS NULL OR stream_updated_at <= $4)`, t.ID, st.Status, st.Reason, time.Unix(c.IssuedAt, 0))
	if err != nil {
		return "", err
	}
	if tag.RowsAffected() == 0 {
		return "older than the stream-updated already recorded", nil
	}
	return "", nil
}

// judge says why event is not acted on, or "" when it is.
func (r *Receiver) judge(t Transmitter, event string, body json.RawMessage) string {
	if !slices.Contains(EventsActedOn(), event) {
		return "not an event this receiver acts on"
	}
	if !slices.Contains(t.Events, event) {
		return "not an event this transmitter may send"
	}
	if event == EventDeviceComplianceChange {
		var d struct {
			Current string `json:"current_status"`
		}
		if json.Unmarshal(body, &d) != nil || d.Current != "not-compliant" {
			return "the device is not reported not-compliant"
		}
	}
	return ""
}

// user maps a sub_id to one of our users as t allows: an email subject to
// the account with that email, an iss_sub with our issuer to the user of
// that id. Anything else names nobody ("").
func (r *Receiver) user(ctx context.Context, q db.Querier, t Transmitter, s *ssf.Subject) (string, error) {
	if s == nil || s.Validate() != nil {
		return "", nil
	}
	var sql string
	var arg string
	switch {
	case s.Format == ssf.FormatEmail && slices.Contains(t.Subjects, SubjectsEmail):
		sql, arg = `SELECT id::text FROM users WHERE lower(email) = lower($1)`, strings.TrimSpace(s.Email)
	case s.Format == ssf.FormatIssSub && slices.Contains(t.Subjects, SubjectsIssSub) && s.Iss == r.Issuer && isUUID(s.Sub):
		sql, arg = `SELECT id::text FROM users WHERE id = $1::uuid`, s.Sub
	default:
		return "", nil
	}
	var id string
	err := q.QueryRow(ctx, sql, arg).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, err
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// Forget deletes the jtis older than Remember: no SET that old is
// accepted anyway (MaxAge).
func (r *Receiver) Forget(ctx context.Context) (int64, error) {
	tag, err := r.Pool.Exec(ctx, `DELETE FROM ssf_received WHERE received_at < $1`, r.now().Add(-Remember))
	if err != nil {
		return 0, fmt.Errorf("receiver: forget: %w", err)
	}
	return tag.RowsAffected(), nil
}
