package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/idp/idp/internal/ssf"
)

// signalsData is the Shared Signals page: every stream a receiver
// created, with how its events stand.
type signalsData struct {
	Notice, Error string
	Streams       []streamRow
}

type streamRow struct {
	ID, ClientID, Delivery, Status, Reason, LastError string
	Backlog, Held, Failed                             int
}

// signals is GET /admin/signals.
func (h *Handler) signals(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.administrator(w, r); !ok {
		return
	}
	h.renderSignals(w, r, http.StatusOK, signalsData{Notice: notice(r)})
}

func (h *Handler) renderSignals(w http.ResponseWriter, r *http.Request, status int, d signalsData) {
	list, err := h.Admin.SignalStreams(r.Context())
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	for _, s := range list {
		delivery := "poll"
		if s.Method == ssf.DeliveryPush {
			delivery = "push to " + s.EndpointURL
		}
		d.Streams = append(d.Streams, streamRow{ID: s.StreamID, ClientID: s.ClientID, Delivery: delivery, Status: s.Status,
			Reason: s.Reason, LastError: s.LastError, Backlog: s.Backlog, Held: s.Held, Failed: s.Failed})
	}
	h.Templates.Render(w, status, "admin-signals", "Shared Signals", h.Sessions.CSRFToken(r), d)
}

// retryStream makes every undelivered event of an enabled stream due now.
func (h *Handler) retryStream(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	n, err := h.Admin.RetrySignalStream(r.Context(), r.PathValue("id"), actor(adm))
	if !h.streamHandled(w, r, err) {
		return
	}
	http.Redirect(w, r, "/admin/signals?"+url.Values{"notice": {"stream-retry"}, "events": {strconv.Itoa(n)}}.Encode(),
		http.StatusSeeOther)
}

// setStreamStatus pauses or enables a stream ("status" is the state
// wanted, so a stale page cannot flip it the wrong way); its receiver is
// told with a stream-updated event. Disabling is not offered here: it
// drops what the stream holds.
func (h *Handler) setStreamStatus(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	status := r.PostFormValue("status")
	if status != ssf.StatusEnabled && status != ssf.StatusPaused {
		h.renderSignals(w, r, http.StatusBadRequest, signalsData{
			Error: "The form did not say whether to pause or enable the stream. Nothing was changed."})
		return
	}
	_, err := h.Admin.SetSignalStreamStatus(r.Context(), r.PathValue("id"), status, r.PostFormValue("reason"), actor(adm))
	if !h.streamHandled(w, r, err) {
		return
	}
	http.Redirect(w, r, "/admin/signals?notice=stream-"+status, http.StatusSeeOther)
}

// streamHandled answers an error of a stream action and reports whether
// there was none.
func (h *Handler) streamHandled(w http.ResponseWriter, r *http.Request, err error) bool {
	var invalid *ssf.InvalidError
	switch {
	case err == nil:
		return true
	case errors.Is(err, ssf.ErrNotFound):
		h.Templates.Error(w, http.StatusNotFound, "There is no Shared Signals stream with that id (its receiver may have deleted it). Nothing was changed.",
			"The Shared Signals page, /admin/signals, lists them all.")
	case errors.Is(err, ssf.ErrNotEnabled):
		h.renderSignals(w, r, http.StatusConflict, signalsData{
			Error: "The stream is paused or disabled: enable it first (enabling a paused stream delivers what it held). Nothing was changed."})
	case errors.As(err, &invalid):
		h.renderSignals(w, r, http.StatusBadRequest, signalsData{Error: "The " + invalid.Message + ". Nothing was changed."})
	default:
		h.Errors.Internal(w, r, err)
	}
	return false
}
