package ssf

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/bearer"
	"github.com/idp/idp/internal/sso/keys"
)

// Scope is the OAuth scope a receiver's access token needs for the SSF
// management API and for polling.
const Scope = "ssf"

// Paths of the transmitter's endpoints.
const (
	PathConfiguration = "/.well-known/ssf-configuration"
	PathStreams       = "/ssf/streams"
	PathStatus        = "/ssf/status"
	PathAddSubject    = "/ssf/subjects:add"
	PathRemoveSubject = "/ssf/subjects:remove"
	PathVerify        = "/ssf/verify"
	PathPoll          = "/ssf/poll"
)

// maxBody bounds a management request's body; the server's request limits
// bound it first, this keeps the package honest on its own.
const maxBody = 16 << 10

// Handler serves the transmitter configuration, the stream management API
// and the poll endpoint. Who may call is authenticate's to say; what a
// request does is the Store's.
type Handler struct {
	Issuer string
	Store  *Store
	// Tokens introspects bearer tokens (the fosite provider).
	Tokens fosite.OAuth2Provider
	// Keys sign the SETs a poll returns.
	Keys *keys.Set
	// LongPoll is how long a poll may wait for an event (DefaultLongPoll).
	LongPoll time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

type route func(w http.ResponseWriter, r *http.Request, clientID string) error

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathConfiguration, h.configuration)
	routes := map[string]route{
		"POST " + PathStreams:       h.create,
		"GET " + PathStreams:        h.read,
		"PATCH " + PathStreams:      h.update,
		"PUT " + PathStreams:        h.replace,
		"DELETE " + PathStreams:     h.delete,
		"GET " + PathStatus:         h.status,
		"POST " + PathStatus:        h.setStatus,
		"POST " + PathAddSubject:    h.addSubject,
		"POST " + PathRemoveSubject: h.removeSubject,
		"POST " + PathVerify:        h.verify,
		"POST " + PathPoll:          h.poll,
	}
	for pattern, rt := range routes {
		mux.Handle(pattern, h.authenticated(rt))
	}
}

// configuration is the transmitter configuration metadata (SSF 1.0 §7.1).
func (h *Handler) configuration(w http.ResponseWriter, r *http.Request) {
	i := h.Issuer
	w.Header().Set("Cache-Control", "public, max-age=3600")
	bearer.WriteJSON(w, http.StatusOK, map[string]any{
		"spec_version":               "1_0",
		"issuer":                     i,
		"jwks_uri":                   i + "/.well-known/jwks.json",
		"delivery_methods_supported": []string{DeliveryPush, DeliveryPoll},
		"configuration_endpoint":     i + PathStreams,
		"status_endpoint":            i + PathStatus,
		"add_subject_endpoint":       i + PathAddSubject,
		"remove_subject_endpoint":    i + PathRemoveSubject,
		"verification_endpoint":      i + PathVerify,
		"authorization_schemes":      []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}},
		"default_subjects":           "ALL",
	})
}

var errInsufficientScope = bearer.InsufficientScope(Scope,
	"The access token lacks the ssf scope, or is not a receiver client's own token (client_credentials).")

func (h *Handler) authenticated(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		clientID, err := h.authenticate(r)
		if err == nil {
			err = rt(w, r, clientID)
		}
		if err != nil {
			bearer.Fail(w, r, err, explain, h.Logger, "ssf")
		}
	})
}

// authenticate accepts a live access token of this provider
// (bearer.Token) with the ssf scope that a client holds for itself
// (client_credentials): a stream is a system's, not a person's, and one
// person's token must not subscribe to everyone's events.
func (h *Handler) authenticate(r *http.Request) (string, error) {
	ar, err := bearer.Token(r, h.Tokens, Scope)
	if err != nil {
		return "", err
	}
	if !ar.GetGrantedScopes().Has(Scope) || ar.GetSession().GetSubject() != "" {
		return "", errInsufficientScope
	}
	return ar.GetClient().GetID(), nil
}

// explain is the status of each error of the Store the receiver caused;
// nil for one it did not.
func explain(err error) *bearer.Error {
	var inv *InvalidError
	switch {
	case errors.As(err, &inv):
		return bearer.BadRequest(inv.Message)
	case errors.Is(err, ErrNotFound):
		return bearer.NotFound("The receiver has no stream with that stream_id.")
	case errors.Is(err, ErrExists):
		return bearer.Conflict("The receiver already has a stream: update or delete it (one stream per receiver).")
	}
	return nil
}

// decode reads a bounded JSON object body into v.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if mt := r.Header.Get("Content-Type"); mt != "" && !strings.HasPrefix(strings.ToLower(mt), "application/json") {
		return bearer.BadRequest("The body must be JSON (Content-Type: application/json).")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &bearer.Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "The body is too large."}
		}
		return bearer.BadRequest("The body must be a JSON object: " + jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return bearer.BadRequest("The body must be one JSON object.")
	}
	return nil
}

// jsonProblem says what is wrong with a body in words that do not echo
// it.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return typeErr.Field + " has the wrong type."
	}
	return "it does not parse."
}

// wireStream is a stream configuration on the wire (SSF 1.0 §8.1.1).
type wireStream struct {
	StreamID        string          `json:"stream_id,omitempty"`
	Iss             string          `json:"iss,omitempty"`
	Aud             json.RawMessage `json:"aud,omitempty"`
	EventsSupported []string        `json:"events_supported,omitempty"`
	EventsRequested *[]string       `json:"events_requested,omitempty"`
	EventsDelivered []string        `json:"events_delivered,omitempty"`
	Delivery        *wireDelivery   `json:"delivery,omitempty"`
	Description     *string         `json:"description,omitempty"`
}

type wireDelivery struct {
	Method      string  `json:"method"`
	EndpointURL *string `json:"endpoint_url,omitempty"`
	// AuthorizationHeader is accepted, never shown: it is the receiver's
	// credential for its own endpoint.
	AuthorizationHeader *string `json:"authorization_header,omitempty"`
}

// wire is st as the receiver sees it.
func (h *Handler) wire(st Stream) wireStream {
	endpoint := st.EndpointURL
	if st.Method == DeliveryPoll {
		endpoint = h.Issuer + PathPoll
	}
	aud, _ := json.Marshal(st.ClientID)
	req := st.EventsRequested
	desc := st.Description
	return wireStream{
		StreamID: st.ID, Iss: h.Issuer, Aud: aud,
		EventsSupported: EventsSupported(), EventsRequested: &req, EventsDelivered: nonNil(st.EventsDelivered()),
		Delivery: &wireDelivery{Method: st.Method, EndpointURL: &endpoint}, Description: &desc,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// config is what the receiver may set, from a body; the members only the
// transmitter sets must, when present on an existing stream, say what they
// say now (SSF §8.1.1.3).
func (h *Handler) config(body wireStream, existing *Stream) (Config, error) {
	if existing != nil {
		cur := h.wire(*existing)
		aud := strings.TrimSpace(string(body.Aud))
		switch {
		case body.Iss != "" && body.Iss != h.Issuer:
			return Config{}, bearer.BadRequest("iss is the transmitter's and cannot be changed.")
		case aud != "" && aud != string(cur.Aud) && aud != `[`+string(cur.Aud)+`]`:
			return Config{}, bearer.BadRequest("aud is the transmitter's and cannot be changed.")
		}
	}
	c := Config{EventsRequested: body.EventsRequested, Description: body.Description}
	if d := body.Delivery; d != nil {
		// Without a method, a PATCH keeps the stream's (and a new stream
		// is refused for want of one).
		m := d.Method
		if m != "" {
			c.Method = &m
		} else if existing != nil {
			m = existing.Method
		}
		c.EndpointURL, c.AuthorizationHeader = d.EndpointURL, d.AuthorizationHeader
		if m == DeliveryPoll && existing != nil && d.EndpointURL != nil && *d.EndpointURL == h.Issuer+PathPoll {
			// The receiver sent back what it read.
			c.EndpointURL = nil
		}
	}
	return c, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, clientID string) error {
	var body wireStream
	if err := decode(w, r, &body); err != nil {
		return err
	}
	if body.Delivery == nil {
		return bearer.BadRequest(`delivery is required: {"method": "` + DeliveryPush + `", "endpoint_url": "https://…"} or {"method": "` + DeliveryPoll + `"}.`)
	}
	c, err := h.config(body, nil)
	if err != nil {
		return err
	}
	st, err := h.Store.Create(r.Context(), clientID, c)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusCreated, h.wire(st))
}

// read answers with the stream named by stream_id, or with the list of
// the receiver's streams (of one at most) when none is named.
func (h *Handler) read(w http.ResponseWriter, r *http.Request, clientID string) error {
	id := r.URL.Query().Get("stream_id")
	st, err := h.Store.Get(r.Context(), clientID, id)
	if id == "" {
		if errors.Is(err, ErrNotFound) {
			return bearer.WriteJSON(w, http.StatusOK, []wireStream{})
		}
		if err != nil {
			return err
		}
		return bearer.WriteJSON(w, http.StatusOK, []wireStream{h.wire(st)})
	}
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, h.wire(st))
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request, clientID string) error {
	return h.change(w, r, clientID, false)
}

func (h *Handler) replace(w http.ResponseWriter, r *http.Request, clientID string) error {
	return h.change(w, r, clientID, true)
}

func (h *Handler) change(w http.ResponseWriter, r *http.Request, clientID string, replace bool) error {
	var body wireStream
	if err := decode(w, r, &body); err != nil {
		return err
	}
	if body.StreamID == "" {
		return bearer.BadRequest("stream_id is required.")
	}
	if replace && body.Delivery == nil {
		return bearer.BadRequest("delivery is required when replacing a stream's configuration.")
	}
	existing, err := h.Store.Get(r.Context(), clientID, body.StreamID)
	if err != nil {
		return err
	}
	c, err := h.config(body, &existing)
	if err != nil {
		return err
	}
	st, err := h.Store.Update(r.Context(), clientID, body.StreamID, c, replace)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, h.wire(st))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, clientID string) error {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		return bearer.BadRequest("stream_id is required.")
	}
	if err := h.Store.Delete(r.Context(), clientID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type wireStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, clientID string) error {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		return bearer.BadRequest("stream_id is required.")
	}
	st, err := h.Store.Get(r.Context(), clientID, id)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, wireStatus{StreamID: st.ID, Status: st.Status, Reason: st.StatusReason})
}

func (h *Handler) setStatus(w http.ResponseWriter, r *http.Request, clientID string) error {
	var body wireStatus
	if err := decode(w, r, &body); err != nil {
		return err
	}
	if body.StreamID == "" || body.Status == "" {
		return bearer.BadRequest("stream_id and status are required.")
	}
	st, err := h.Store.SetStatus(r.Context(), clientID, body.StreamID, body.Status, body.Reason)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, wireStatus{StreamID: st.ID, Status: st.Status, Reason: st.StatusReason})
}

type wireSubject struct {
	StreamID string   `json:"stream_id"`
	Subject  *Subject `json:"subject"`
	Verified *bool    `json:"verified,omitempty"`
}

func (h *Handler) addSubject(w http.ResponseWriter, r *http.Request, clientID string) error {
	return h.subject(w, r, clientID, true)
}

func (h *Handler) removeSubject(w http.ResponseWriter, r *http.Request, clientID string) error {
	return h.subject(w, r, clientID, false)
}

func (h *Handler) subject(w http.ResponseWriter, r *http.Request, clientID string, add bool) error {
	var body wireSubject
	if err := decode(w, r, &body); err != nil {
		return err
	}
	if body.StreamID == "" || body.Subject == nil {
		return bearer.BadRequest("stream_id and subject are required.")
	}
	if err := h.Store.SetSubject(r.Context(), clientID, body.StreamID, h.Issuer, *body.Subject, add); err != nil {
		return err
	}
	if add {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, clientID string) error {
	var body struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if err := decode(w, r, &body); err != nil {
		return err
	}
	if body.StreamID == "" {
		return bearer.BadRequest("stream_id is required.")
	}
	if len(body.State) > 1000 {
		return bearer.BadRequest("state is longer than 1000 bytes.")
	}
	if err := h.Store.Verify(r.Context(), clientID, body.StreamID, body.State); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
