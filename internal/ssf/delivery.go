package ssf

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/idp/idp/internal/bearer"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/sso/keys"
)

// DefaultTimeout bounds one push attempt when Pusher.HTTP has none.
const DefaultTimeout = 10 * time.Second

// SigningAlg signs every SET: RS256 is what every receiver's library
// verifies (SSF's interoperability profile names it).
const SigningAlg = keys.RS256

// Pusher delivers push streams' events (RFC 8935): the outbox kind
// KindPush.
type Pusher struct {
	Store  *Store
	Keys   *keys.Set
	Issuer string
	// HTTP is copied, never mutated; the copy follows no redirect and
	// times out after DefaultTimeout when HTTP.Timeout is zero.
	HTTP *http.Client
	// AllowPrivate lets pushes reach this host and private networks
	// (IDP_ALLOW_PRIVATE_BACKCHANNEL); otherwise every address dialled is
	// checked once DNS has resolved it.
	AllowPrivate bool
	Now          func() time.Time
}

// Kind is the outbox kind that delivers through p.
func (p Pusher) Kind() (outbox.Kind, error) {
	if p.Store == nil || p.Keys == nil || p.Issuer == "" {
		return outbox.Kind{}, errors.New("ssf: pusher: Store, Keys and Issuer are required")
	}
	client, err := netguard.DeliveryClient(p.HTTP, DefaultTimeout, outbox.DefaultConcurrency, p.AllowPrivate)
	if err != nil {
		return outbox.Kind{}, fmt.Errorf("ssf: pusher: %w", err)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	d := pushing{Pusher: p, http: client}
	return outbox.Kind{Send: d.send, Timeout: client.Timeout, GiveUpAfter: Retention, Log: "ssf push"}, nil
}

type pushing struct {
	Pusher
	http *http.Client
}

// send makes one attempt at a claimed row: the stream as it is now
// decides where the SET goes, or whether it waits (paused) or goes
// nowhere (disabled, deleted, turned into a poll stream).
func (d pushing) send(ctx context.Context, j outbox.Job) outbox.Result {
	m, err := decodeMessage(j.Payload)
	if err != nil {
		return outbox.Result{Outcome: outbox.Failed, Error: err.Error()}
	}
	attrs := []slog.Attr{slog.String("stream_id", m.StreamID), slog.String("jti", m.SET.JTI)}
	st, err := d.Store.ByID(ctx, m.StreamID)
	switch {
	case errors.Is(err, ErrNotFound) || (err == nil && st.ClientID != j.ClientID):
		return outbox.Result{Outcome: outbox.Failed, Error: "the stream was deleted", Attrs: attrs}
	case err != nil:
		return outbox.Result{Outcome: outbox.Retrying, Error: err.Error(), Attrs: attrs}
	case st.Method != DeliveryPush:
		return outbox.Result{Outcome: outbox.Failed, Error: "the stream no longer uses push delivery", Attrs: attrs}
	case m.aboutStream():
		// A stream-updated event goes whatever the status it announces.
	case st.Status == StatusDisabled:
		return outbox.Result{Outcome: outbox.Failed, Error: "the stream is disabled", Attrs: attrs}
	case st.Status == StatusPaused:
		// Queued since the pause held the others: it waits with them
		// for the stream to be enabled, which releases it.
		return outbox.Result{Outcome: outbox.Held, Error: "held: the stream is paused", Attrs: attrs}
	}
	token, err := m.SET.Sign(d.Keys, SigningAlg, d.Issuer, st.ClientID)
	if errors.Is(err, ErrInvalidSET) {
		return outbox.Result{Outcome: outbox.Failed, Error: err.Error(), Attrs: attrs}
	}
	if err != nil {
		return outbox.Result{Outcome: outbox.Retrying, Error: err.Error(), Attrs: attrs}
	}
	r := push(ctx, d.http, st.EndpointURL, st.AuthorizationHeader, token, d.Now())
	switch {
	case r.delivered:
		return outbox.Result{Outcome: outbox.Delivered, Attrs: attrs}
	case r.retry:
		return outbox.Result{Outcome: outbox.Retrying, RetryAfter: r.retryAfter, Error: r.err, Attrs: attrs}
	}
	return outbox.Result{Outcome: outbox.Failed, Error: r.err, Attrs: attrs}
}

// Poll limits.
const (
	defaultMaxEvents = 100
	maxMaxEvents     = 1000
	maxAcks          = 1000
	// DefaultLongPoll is how long a poll that may wait (returnImmediately
	// false) waits for an event: below the idle timeouts of common
	// proxies.
	DefaultLongPoll = 20 * time.Second
	longPollTick    = 250 * time.Millisecond
)

// pollRequest is RFC 8936 §2.4's request.
type pollRequest struct {
	MaxEvents         *int                `json:"maxEvents"`
	ReturnImmediately *bool               `json:"returnImmediately"`
	Ack               []string            `json:"ack"`
	SetErrs           map[string]setError `json:"setErrs"`
}

type setError struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// poll answers a poll stream's receiver (RFC 8936): it records the acks
// and errors the request carries, then returns up to maxEvents
// unacknowledged SETs, oldest first, waiting for one unless asked to
// return at once. A SET stays until acknowledged, reported or expired, so
// a receiver that loses an answer gets the same SETs (same jti) again.
func (h *Handler) poll(w http.ResponseWriter, r *http.Request, clientID string) error {
	var req pollRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	limit := defaultMaxEvents
	if req.MaxEvents != nil {
		if *req.MaxEvents < 0 {
			return bearer.BadRequest("maxEvents must not be negative.")
		}
		limit = min(*req.MaxEvents, maxMaxEvents)
	}
	if len(req.Ack)+len(req.SetErrs) > maxAcks {
		return bearer.BadRequest("ack and setErrs name more than 1000 SETs.")
	}
	ctx := r.Context()
	st, err := h.Store.Get(ctx, clientID, "")
	if err != nil {
		return err
	}
	if st.Method != DeliveryPoll {
		return bearer.BadRequest("The stream uses push delivery; poll is for streams with delivery method " + DeliveryPoll + ".")
	}
	if err := h.acknowledge(ctx, clientID, req); err != nil {
		return err
	}
	wait := req.ReturnImmediately == nil || !*req.ReturnImmediately
	deadline := h.now().Add(cmp.Or(h.LongPoll, DefaultLongPoll))
	for {
		sets, more, err := h.pending(ctx, st, limit)
		if err != nil {
			return err
		}
		if len(sets) > 0 || !wait || limit == 0 || !h.now().Before(deadline) {
			return bearer.WriteJSON(w, http.StatusOK, map[string]any{"sets": sets, "moreAvailable": more})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(longPollTick):
		}
		// The stream may have been paused, disabled or deleted meanwhile.
		if st, err = h.Store.Get(ctx, clientID, st.ID); err != nil {
			return err
		}
	}
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// pending signs up to limit of the stream's waiting SETs. A paused or
// disabled stream has none to give but the stream-updated events that say
// so.
func (h *Handler) pending(ctx context.Context, st Stream, limit int) (map[string]string, bool, error) {
	sets := map[string]string{}
	if limit == 0 {
		return sets, false, nil
	}
	f := outbox.Filter{Kinds: []string{KindPoll}, ClientID: st.ClientID}
	if st.Status != StatusEnabled {
		f.Reasons = []string{EventStreamUpdated}
	}
	jobs, more, err := outbox.Pending(ctx, h.Store.Pool, f, limit, h.now(), Retention)
	if err != nil {
		return nil, false, err
	}
	for _, j := range jobs {
		m, err := decodeMessage(j.Payload)
		if err != nil {
			return nil, false, err
		}
		if m.StreamID != st.ID {
			// Queued for a stream since deleted and made anew: not this
			// stream's. Failed rather than skipped, or enough of them
			// would fill every answer.
			if err := outbox.Fail(ctx, h.Store.Pool, KindPoll, st.ClientID, j.ID, h.now(), "the stream was deleted"); err != nil {
				return nil, false, err
			}
			continue
		}
		token, err := m.SET.Sign(h.Keys, SigningAlg, h.Issuer, st.ClientID)
		if err != nil {
			return nil, false, err
		}
		sets[m.SET.JTI] = token
	}
	return sets, more, nil
}

// acknowledge records the request's acks and setErrs, which name SETs by
// jti.
func (h *Handler) acknowledge(ctx context.Context, clientID string, req pollRequest) error {
	if len(req.Ack) == 0 && len(req.SetErrs) == 0 {
		return nil
	}
	// A jti that PostgreSQL cannot hold names no SET of ours.
	var jtis []string
	for _, jti := range req.Ack {
		if storable(jti) {
			jtis = append(jtis, jti)
		}
	}
	for jti, e := range req.SetErrs {
		if len(e.Err) > 100 || len(e.Description) > 1000 {
			return bearer.BadRequest("A setErrs entry is too long.")
		}
		if storable(jti) {
			jtis = append(jtis, jti)
		}
	}
	if len(jtis) == 0 {
		return nil // none names a SET of ours (and no Values would select every row)
	}
	return db.Tx(ctx, h.Store.Pool, func(ctx context.Context) error {
		ids, err := outbox.Find(ctx, db.Conn(ctx, h.Store.Pool), outbox.Filter{Kinds: []string{KindPoll}, ClientID: clientID,
			Path: []string{"set", "jti"}, Values: jtis})
		if err != nil {
			return err
		}
		now := h.now()
		var acked []int64
		for _, jti := range req.Ack {
			if id, ok := ids[jti]; ok {
				acked = append(acked, id)
			}
		}
		if _, err := outbox.Ack(ctx, h.Store.Pool, KindPoll, clientID, acked, now); err != nil {
			return err
		}
		for jti, e := range req.SetErrs {
			id, ok := ids[jti]
			if !ok {
				continue
			}
			msg := strings.TrimSpace(redact("receiver: "+e.Err+": "+e.Description, ""))
			if err := outbox.Fail(ctx, h.Store.Pool, KindPoll, clientID, id, now, msg); err != nil {
				return err
			}
		}
		return nil
	})
}
