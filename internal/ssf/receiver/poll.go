package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/db"
)

// Poller fetches SETs from the poll transmitters (RFC 8936), on every
// instance: each poll holds its transmitter's row locked (FOR UPDATE SKIP
// LOCKED) from the request to the commit of what it did, so two instances
// never process one batch, and a batch is acknowledged only by the poll
// after the one that fetched it, once what it did is committed. A crash
// in between leaves the batch unacknowledged: it comes again, and its
// jtis, if committed, make it a no-op.
type Poller struct {
	Receiver *Receiver
	Interval time.Duration
	Logger   *slog.Logger

	mu      sync.Mutex
	sources map[string]oauth2.TokenSource // client-credentials tokens, by transmitter and secret
}

// maxRounds bounds the polls of one transmitter in one pass, while the
// transmitter says more is available.
const maxRounds = 10

// Run polls every Interval until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.PollAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PollAll polls each poll transmitter once (not those another instance is
// polling).
func (p *Poller) PollAll(ctx context.Context) {
	rows, err := p.Receiver.Pool.Query(ctx, `SELECT id FROM ssf_transmitters WHERE delivery = 'poll' ORDER BY id`)
	if err != nil {
		if ctx.Err() == nil {
			p.Logger.Error("ssf poll: list transmitters", "err", err)
		}
		return
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, id := range ids {
		if err := p.Poll(ctx, id); err != nil && ctx.Err() == nil {
			p.Logger.Error("ssf poll", "transmitter", id, "err", err)
		}
	}
}

type pollRequest struct {
	Ack               []string             `json:"ack"`
	SetErrs           map[string]*SETError `json:"setErrs,omitempty"`
	MaxEvents         int                  `json:"maxEvents"`
	ReturnImmediately bool                 `json:"returnImmediately"`
}

type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// Poll polls one transmitter, unless another instance is at it, for as
// long as it says more is available (maxRounds at most).
func (p *Poller) Poll(ctx context.Context, id string) error {
	for range maxRounds {
		more, err := p.pollOnce(ctx, id)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// pollOnce is one poll in one transaction: the request acknowledges the
// previous batch (committed by the previous transaction), and this batch's
// effects and the acks they earn commit together. One request per
// transaction, so a failure here can never undo what an earlier request
// already acknowledged.
func (p *Poller) pollOnce(ctx context.Context, id string) (more bool, err error) {
	r := p.Receiver
	err = db.Tx(ctx, r.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		var acks []string
		var errsJSON []byte
		t, err := scan(rowFunc(func(dest ...any) error {
			return u.QueryRow(ctx, `SELECT `+columns+`, pending_acks, pending_errs FROM ssf_transmitters
				WHERE id = $1 AND delivery = 'poll' FOR UPDATE SKIP LOCKED`, id).
				Scan(append(dest, &acks, &errsJSON)...)
		}))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // gone, or another instance polls it now
		}
		if err != nil {
			return err
		}
		setErrs := map[string]*SETError{}
		_ = json.Unmarshal(errsJSON, &setErrs)
		if r.Store.Box == nil {
			return fmt.Errorf("no server secret to open the poll token")
		}
		token, err := p.token(ctx, t)
		if err != nil {
			u.Queue(`UPDATE ssf_transmitters SET last_poll_at = $2, last_error = $3 WHERE id = $1`, t.ID, r.now(), err.Error())
			return nil
		}
		resp, err := p.request(ctx, t, token, pollRequest{Ack: nonNil(acks), SetErrs: setErrs, MaxEvents: 100, ReturnImmediately: true})
		if err != nil {
			// Nothing was acknowledged; the pending acks go with the next poll.
			u.Queue(`UPDATE ssf_transmitters SET last_poll_at = $2, last_error = $3 WHERE id = $1`, t.ID, r.now(), err.Error())
			return nil
		}
		acks, setErrs = nil, map[string]*SETError{}
		for jti, raw := range resp.Sets {
			if _, err := r.Handle(ctx, t, raw); err != nil {
				if e, ok := IsRefusal(err); ok {
					setErrs[jti] = e
					continue
				}
				// The transmitter's keys unreachable: neither acknowledged
				// nor reported, so it comes again. (A database error has
				// aborted the transaction: nothing of this batch commits.)
				p.Logger.Warn("ssf poll: SET not processed; it comes again", "transmitter", t.ID, "jti", jti, "err", err)
				continue
			}
			acks = append(acks, jti)
		}
		errsJSON, _ = json.Marshal(setErrs)
		u.Queue(`UPDATE ssf_transmitters SET pending_acks = $2, pending_errs = $3, last_poll_at = $4, last_error = '' WHERE id = $1`,
			t.ID, nonNil(acks), errsJSON, r.now())
		more = resp.MoreAvailable
		return nil
	})
	return more, err
}

// token is the bearer token of a poll: the one we were given, or one got
// with the client-credentials grant, reused until it expires.
func (p *Poller) token(ctx context.Context, t Transmitter) (string, error) {
	secret, err := p.Receiver.Store.Box.Open(t.pollToken, []byte(t.ID))
	if err != nil {
		return "", fmt.Errorf("poll credential: %w", err)
	}
	if t.ClientID == "" {
		return string(secret), nil
	}
	key := t.ID + " " + string(secret)
	p.mu.Lock()
	src, ok := p.sources[key]
	if !ok {
		cc := tokenConfig(t, string(secret))
		// The grant's own context only carries the HTTP client (netguard):
		// the source outlives this poll.
		src = oauth2.ReuseTokenSource(nil, cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, p.Receiver.Verifier.Client())))
		if p.sources == nil {
			p.sources = map[string]oauth2.TokenSource{}
		}
		p.sources[key] = src
	}
	p.mu.Unlock()
	tok, err := src.Token()
	if err != nil {
		return "", fmt.Errorf("poll: client credentials at %s: %w", t.TokenURL, err)
	}
	return tok.AccessToken, nil
}

type rowFunc func(dest ...any) error

func (f rowFunc) Scan(dest ...any) error { return f(dest...) }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (p *Poller) request(ctx context.Context, t Transmitter, token string, body pollRequest) (pollResponse, error) {
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.PollURL, bytes.NewReader(b))
	if err != nil {
		return pollResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.Receiver.Verifier.Client().Do(req)
	if err != nil {
		return pollResponse{}, fmt.Errorf("poll: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pollResponse{}, fmt.Errorf("poll: HTTP %d", resp.StatusCode)
	}
	var out pollResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&out); err != nil {
		return pollResponse{}, fmt.Errorf("poll: the answer is not JSON: %w", err)
	}
	return out, nil
}
