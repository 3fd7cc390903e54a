package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/idp/idp/internal/bearer"
	"github.com/idp/idp/internal/ssf"
)

// The Shared Signals streams receivers created (package ssf), as an
// administrator sees and acts on them. Each change is recorded by ssf in
// the transaction that makes it, with the administrator as actor.

// errNoStreams is the answer where the Service has no Streams (a
// command-line Service that never opens a sealed value).
var errNoStreams = errors.New("admin: no Shared Signals streams are configured")

// SignalStreams lists every stream with its status, backlog and last
// error.
func (s *Service) SignalStreams(ctx context.Context) ([]ssf.State, error) {
	list, err := ssf.Overview(ctx, s.Pool)
	if list == nil {
		list = []ssf.State{}
	}
	return list, wrap("signal streams", err)
}

// SignalStream is one stream; ssf.ErrNotFound for an unknown id.
func (s *Service) SignalStream(ctx context.Context, id string) (ssf.State, error) {
	st, err := ssf.StreamState(ctx, s.Pool, id)
	return st, wrap("signal stream", err)
}

// RetrySignalStream makes every undelivered event of the stream due now
// (ssf.Store.RetryNow) and returns how many; ssf.ErrNotEnabled for a
// paused or disabled stream.
func (s *Service) RetrySignalStream(ctx context.Context, id, actor string) (int, error) {
	if s.Streams == nil {
		return 0, errNoStreams
	}
	n, err := s.Streams.RetryNow(ctx, id, actor)
	return n, wrap("retry signal stream", err)
}

// SetSignalStreamStatus enables, pauses or disables the stream, telling
// its receiver with a stream-updated event (ssf.Store.ChangeStatus), and
// returns it as it is then; *ssf.InvalidError for a status or reason it
// cannot take.
func (s *Service) SetSignalStreamStatus(ctx context.Context, id, status, reason, actor string) (ssf.State, error) {
	if s.Streams == nil {
		return ssf.State{}, errNoStreams
	}
	if _, err := s.Streams.ChangeStatus(ctx, id, status, reason, actor); err != nil {
		return ssf.State{}, wrap("set signal stream status", err)
	}
	return s.SignalStream(ctx, id)
}

func (a *API) signalStreams(w http.ResponseWriter, r *http.Request, _ caller) error {
	list, err := a.Service.SignalStreams(r.Context())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"streams": list})
}

func (a *API) signalStream(w http.ResponseWriter, r *http.Request, _ caller) error {
	st, err := a.Service.SignalStream(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, st)
}

func (a *API) retrySignalStream(w http.ResponseWriter, r *http.Request, c caller) error {
	n, err := a.Service.RetrySignalStream(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		return err
	}
	// Accepted: the workers deliver them (a poll stream's receiver
	// fetches them), and the stream's backlog shows how that went.
	return bearer.WriteJSON(w, http.StatusAccepted, map[string]any{"stream_id": r.PathValue("id"), "retried": n})
}

func (a *API) setSignalStreamStatus(w http.ResponseWriter, r *http.Request, c caller) error {
	var body struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &body); err != nil || body.Status == "" {
		return bearer.BadRequest(`The body must be JSON: {"status": "enabled" | "paused" | "disabled", "reason": "…"}.`)
	}
	st, err := a.Service.SetSignalStreamStatus(r.Context(), r.PathValue("id"), body.Status, body.Reason, c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, st)
}
