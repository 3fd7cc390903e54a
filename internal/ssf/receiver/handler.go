package receiver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
)

// PathReceive is the push endpoint (RFC 8935) of transmitter {id}.
const PathReceive = "/ssf/receive/"

// maxSET bounds a pushed SET: the bound reqlimit puts on every body (a
// larger one is refused there, 413).
const maxSET = 32 << 10

// Handler is the push endpoint.
type Handler struct {
	Receiver *Receiver
	Logger   *slog.Logger
}

// Mount registers the push endpoint.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST "+PathReceive+"{id}", h.receive)
}

// receive answers as RFC 8935 §2.2–2.4 says: 202 for a SET accepted
// (acted on, ignored as unknown, or a repeat of one already accepted),
// 400 with err and description for a SET refused, 401 without the
// Authorization header this provider generated for the transmitter.
func (h *Handler) receive(w http.ResponseWriter, r *http.Request) {
	t, err := h.Receiver.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.Logger.Error("ssf receive: transmitter", "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	// The same answer for an unknown transmitter and a wrong header, after
	// the same work: the endpoint does not say which transmitters exist.
	given := sha256.Sum256([]byte(r.Header.Get("Authorization")))
	if errors.Is(err, ErrNotFound) || t.Delivery != DeliveryPush || subtle.ConstantTimeCompare(given[:], t.pushHash) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssf"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/secevent+jwt" {
		writeRefusal(w, &SETError{Code: "invalid_request", Description: "Content-Type must be application/secevent+jwt"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSET+1))
	if err != nil || len(body) > maxSET {
		writeRefusal(w, &SETError{Code: "invalid_request", Description: "the SET is missing or too large"})
		return
	}
	out, err := h.Receiver.Handle(r.Context(), t, strings.TrimSpace(string(body)))
	if e, ok := IsRefusal(err); ok {
		h.Logger.Info("ssf receive: SET refused", "transmitter", t.ID, "err", e.Code, "description", e.Description)
		writeRefusal(w, e)
		return
	}
	if err != nil {
		// The transmitter's keys unreachable, or our database: the SET is
		// not at fault, and a 5xx makes the transmitter retry.
		h.Logger.Error("ssf receive", "transmitter", t.ID, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	h.Logger.Info("ssf receive: SET accepted", "transmitter", t.ID, "duplicate", out.Duplicate,
		"acted", out.Acted, "stream", out.Stream, "sessions", out.Sessions)
	w.WriteHeader(http.StatusAccepted)
}

func writeRefusal(w http.ResponseWriter, e *SETError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(e) //nolint:errcheck // the client is gone
}
