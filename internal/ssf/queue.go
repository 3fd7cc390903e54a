package ssf

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/sessions"
)

// Outbox kinds of security events: a push stream's are delivered by the
// outbox's workers (Transmitter.Kind), a poll stream's wait for the
// receiver's poll (RFC 8936) and its acknowledgement.
const (
	KindPush = "ssf-push"
	KindPoll = "ssf-poll"
)

// Retention: a push event is retried, and a poll event kept for its
// receiver, this long after it was queued. Longer than logout (an hour),
// since a receiver that is down for a weekend still wants to know whose
// sessions ended; an event older than this is no longer worth acting on.
const Retention = 7 * 24 * time.Hour

// message is an outbox row's payload: which stream, and the SET's claims
// but iss and aud.
type message struct {
	StreamID string `json:"stream_id"`
	SET      SET    `json:"set"`
}

// aboutStream reports whether the message is a stream-updated event,
// which goes to a paused or disabled stream too.
func (m message) aboutStream() bool {
	_, ok := m.SET.Events[EventStreamUpdated]
	return ok
}

func kindOf(method string) string {
	if method == DeliveryPoll {
		return KindPoll
	}
	return KindPush
}

// newSET starts a SET: a random jti, and iat now.
func newSET(now time.Time, sub Subject, events map[string]map[string]any, txn string) SET {
	return SET{JTI: rand.Text(), IssuedAt: now.Unix(), Subject: sub, Events: events, TxnID: txn}
}

// Verify queues a verification event echoing state on clientID's stream
// (SSF 1.0 §8.1.4.2); its subject is the stream itself.
func (s *Store) Verify(ctx context.Context, clientID, streamID, state string) error {
	if !storable(state) {
		return invalid("state must be valid UTF-8 text without NUL characters")
	}
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		st, err := s.get(ctx, clientID, streamID, false)
		if err != nil {
			return err
		}
		if st.Status == StatusDisabled {
			return invalid("the stream is disabled: enable it first")
		}
		now := s.now()
		return outbox.Queue(ctx, s.Pool, now, outbox.Message{Kind: kindOf(st.Method), ClientID: clientID,
			Reason: "verification", Payload: message{StreamID: st.ID, SET: newSET(now, Opaque(st.ID), Verification(state), "")}})
	})
	if err != nil {
		return fmt.Errorf("ssf: verify: %w", err)
	}
	return nil
}

// Publisher queues security events about users for every stream that
// wants them, in the transaction of the change that caused them.
type Publisher struct {
	Pool   *pgxpool.Pool
	Issuer string
	Now    func() time.Time
}

// Publish queues events about each of about (one SET per user named, per
// stream) into the unit in ctx, or at once outside one. txn ties the SETs
// of one change together.
func (p *Publisher) Publish(ctx context.Context, now time.Time, event string, events func(About) map[string]map[string]any, about []About, txn string) (int, error) {
	// Streams are found once per person, not per session: a revoke-all
	// of one person's hundred sessions is one lookup.
	var users []string
	for _, a := range about {
		if !slices.Contains(users, a.UserID) {
			users = append(users, a.UserID)
		}
	}
	ts, err := targets(ctx, db.Conn(ctx, p.Pool), p.Issuer, event, users)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	byUser := map[string][]target{}
	for _, t := range ts {
		byUser[t.UserID] = append(byUser[t.UserID], t)
	}
	var msgs []outbox.Message
	for _, a := range about {
		for _, t := range byUser[a.UserID] {
			msgs = append(msgs, outbox.Message{Kind: kindOf(t.Method), ClientID: t.ClientID, SID: a.SID, Subject: a.UserID,
				Reason: event, Payload: message{StreamID: t.StreamID, SET: newSET(now, t.Subject, events(a), txn)}})
		}
	}
	if err := outbox.Queue(ctx, p.Pool, now, msgs...); err != nil {
		return 0, err
	}
	return len(msgs), nil
}

// OnRevoke is a sessions.Manager hook: a CAEP session-revoked event for
// every session a revocation ended, whatever the reason, queued in the
// revocation's transaction alongside the back-channel logout rows.
func (p *Publisher) OnRevoke(ctx context.Context, e sessions.Ended) error {
	about := make([]About, len(e.Sessions))
	for i, s := range e.Sessions {
		about[i] = About{UserID: s.UserID, SID: s.SID}
	}
	initiator, why := revokeReason(e.Reason)
	// One txn per revocation: the receiver sees which events one action
	// caused (two sessions of one revoke-all).
	_, err := p.Publish(ctx, e.At, EventSessionRevoked, func(About) map[string]map[string]any {
		return SessionRevoked(e.At, initiator, why)
	}, about, rand.Text())
	return err
}

// revokeReason says who ended a session and why, in CAEP's terms.
func revokeReason(reason string) (initiator, text string) {
	switch reason {
	case sessions.ReasonAdminRevoke:
		return InitiatorAdmin, "An administrator ended every session of the account."
	case sessions.ReasonUserDisabled:
		return InitiatorAdmin, "The account was disabled."
	case sessions.ReasonUserDeleted:
		return InitiatorAdmin, "The account was deleted."
	case sessions.ReasonLogout, sessions.ReasonUserSignOut, sessions.ReasonUserSignOutAll:
		return InitiatorUser, "The person signed out."
	case sessions.ReasonPasswordChanged:
		return InitiatorUser, "The password was changed."
	case sessions.ReasonFactorsChanged:
		return InitiatorUser, "A sign-in factor was changed."
	case sessions.ReasonExpired:
		return InitiatorPolicy, "The session timed out."
	case sessions.ReasonSignalReceived:
		return InitiatorPolicy, "A trusted system reported a security event."
	case sessions.ReasonUserReported:
		return InitiatorUser, "The person said a sign-in or change was not theirs."
	}
	return InitiatorSystem, ""
}

// events selects the outbox rows of the events queued for st, of both
// kinds: rows of an earlier stream of the same receiver are not its.
func events(st Stream) outbox.Filter {
	return outbox.Filter{Kinds: []string{KindPush, KindPoll}, ClientID: st.ClientID,
		Path: []string{"stream_id"}, Values: []string{st.ID}}
}

// holdEvents keeps a paused stream's push events from every attempt until
// releaseEvents; a poll stream's wait anyway, as its poll returns none.
func holdEvents(ctx context.Context, pool *pgxpool.Pool, st Stream) error {
	f := events(st)
	f.Kinds = []string{KindPush}
	_, err := outbox.Hold(ctx, pool, f)
	return err
}

// releaseEvents makes the push events a pause held due now.
func releaseEvents(ctx context.Context, pool *pgxpool.Pool, st Stream) error {
	f := events(st)
	f.Kinds = []string{KindPush}
	_, err := outbox.Release(ctx, pool, f)
	return err
}

// failEvents fails every event clientID's stream still holds, saying why:
// a disabled or deleted stream gets none of them, even if enabled or made
// again before their next attempt. Every row of the receiver, so a row
// of a stream it deleted before goes too.
func failEvents(ctx context.Context, pool *pgxpool.Pool, clientID string, now time.Time, why string) error {
	_, err := outbox.FailAll(ctx, pool, outbox.Filter{Kinds: []string{KindPush, KindPoll}, ClientID: clientID}, now, why)
	return err
}

// decodeMessage reads a row's payload. Numbers stay as written: an
// event_timestamp read as a float64 would be signed as 1.7e+09, which
// receivers' int64 fields refuse.
func decodeMessage(raw json.RawMessage) (message, error) {
	var m message
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return message{}, fmt.Errorf("ssf: outbox payload: %w", err)
	}
	return m, nil
}
