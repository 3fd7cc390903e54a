package registration

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/idp/idp/internal/ops"
)

// Handler serves the registration endpoint (RFC 7591 §3) and the client
// configuration endpoint (RFC 7592 §2).
type Handler struct {
	Service *Service
	Logger  *slog.Logger
}

// Mount registers the endpoints.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /oauth2/register", h.register)
	mux.HandleFunc("GET /oauth2/register/{client_id}", h.read)
	mux.HandleFunc("PUT /oauth2/register/{client_id}", h.update)
	mux.HandleFunc("DELETE /oauth2/register/{client_id}", h.delete)
}

func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	token, ok := bearer(r)
	if !ok {
		h.fail(w, r, invalidToken("the Authorization header must be a Bearer initial access token"))
		return
	}
	var m Metadata
	if err := decode(r, &m); err != nil {
		h.fail(w, r, err)
		return
	}
	// The ops middleware has put the client's address here (behind
	// trusted proxies, the one they name).
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	resp, err := h.Service.Register(r.Context(), token, addr, m)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (h *Handler) read(w http.ResponseWriter, r *http.Request) {
	token, _ := bearer(r)
	resp, err := h.Service.Read(r.Context(), r.PathValue("client_id"), token)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	token, _ := bearer(r)
	// The client's id and secret travel with the metadata (RFC 7592
	// §2.2); the fields the server sets are ignored.
	var body struct {
		Metadata
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := decode(r, &body); err != nil {
		// An unauthenticated request learns nothing about the body's
		// validity first.
		if _, aerr := h.Service.authenticate(r.Context(), r.PathValue("client_id"), token, false); aerr != nil {
			err = aerr
		}
		h.fail(w, r, err)
		return
	}
	resp, err := h.Service.Update(r.Context(), r.PathValue("client_id"), token, body.Metadata, body.ClientID, body.ClientSecret)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	token, _ := bearer(r)
	if err := h.Service.Delete(r.Context(), r.PathValue("client_id"), token); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// bearer returns the request's Bearer token: "" and true when there is no
// Authorization header, false when it is of another kind.
func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "", true
	}
	scheme, token, found := strings.Cut(a, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// decode reads a JSON object of client metadata (the body is bounded by
// reqlimit before it gets here).
func decode(r *http.Request, v any) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return invalidMetadata("the client metadata must be sent as application/json")
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return invalidMetadata("the body is not a JSON object of client metadata: %v", err)
	}
	if dec.More() {
		return invalidMetadata("the body holds more than one JSON value")
	}
	return nil
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		if !errors.Is(err, context.Canceled) {
			h.Logger.ErrorContext(r.Context(), "registration", "request_id", ops.RequestID(r.Context()), "err", err)
		}
		e = &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "the client could not be registered now; try again"}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}
