// Package bearer is what the JSON APIs that take this provider's access
// tokens as bearer credentials share (the admin API, the SSF management
// API): finding and checking the token (RFC 6750), and answering an error
// as OAuth does, {"error", "error_description"} with the challenge RFC
// 6750 §3 asks for. Who may call each API stays that API's to say.
package bearer

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/sso/store"
)

// Error is an error the client caused, with its status, code and
// description.
type Error struct {
	Status            int
	Code, Description string
	// Scope, for insufficient_scope, is the scope the challenge names.
	Scope string
	// Params are auth-params the challenge adds (RFC 9470's acr_values,
	// max_age), already formatted: `, name="value"`.
	Params string
	// noCredentials: a request without a token is answered without an
	// error code (RFC 6750 §3.1).
	noCredentials bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// BadRequest is an invalid_request.
func BadRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

// NotFound is a not_found.
func NotFound(desc string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Description: desc}
}

// Conflict is a conflict.
func Conflict(desc string) *Error {
	return &Error{Status: http.StatusConflict, Code: "conflict", Description: desc}
}

// InsufficientScope is a 403 insufficient_scope naming scope.
func InsufficientScope(scope, desc string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "insufficient_scope", Description: desc, Scope: scope}
}

// ErrInvalidToken is a token that is not a live access token of this
// provider usable as a bearer token.
var ErrInvalidToken = &Error{Status: http.StatusUnauthorized, Code: "invalid_token",
	Description: "The access token is invalid, expired or revoked."}

// Token returns the access token the Authorization header of r carries,
// introspected: a live access token of this provider, not bound to a
// DPoP key (these APIs check no proof, so a bound token is worthless
// here, RFC 9449 §7). Without a bearer token the error says that one with
// scope is required; the caller judges the scopes and the holder.
func Token(r *http.Request, tokens fosite.OAuth2Provider, scope string) (fosite.AccessRequester, error) {
	// Only the Authorization header: a token in a query string ends up in
	// logs, and a form body is not what an API client sends.
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", noCredentials: true,
			Description: "A bearer access token with the " + scope + " scope is required."}
	}
	use, ar, err := tokens.IntrospectToken(r.Context(), token, fosite.AccessToken, openid.NewDefaultSession())
	if db.IsUnavailable(err) {
		return nil, err
	}
	// fosite falls back to refresh tokens when the hint does not match; a
	// refresh token is not a bearer credential.
	if err != nil || use != fosite.AccessToken || store.BoundKey(ar) != "" {
		return nil, ErrInvalidToken
	}
	return ar, nil
}

// challenge is the WWW-Authenticate value for e (RFC 6750 §3): no error
// code for a request without credentials, the code and description
// otherwise, and the scope needed when it was missing.
func (e *Error) challenge() string {
	switch {
	case e.noCredentials:
		return `Bearer realm="idp"`
	case e.Status == http.StatusUnauthorized:
		return `Bearer error="` + e.Code + `", error_description="` + e.Description + `"` + e.Params
	case e.Code == "insufficient_scope":
		return `Bearer error="` + e.Code + `", error_description="` + e.Description + `", scope="` + e.Scope + `"`
	}
	return ""
}

// Fail is the one place an API's errors become answers: an *Error as it
// says; what explain maps (the API's domain errors) likewise; a database
// that could not serve the request a 503 to retry; anything else a 500,
// logged as name with the request id and route. Only that last is logged:
// the others are the client's.
func Fail(w http.ResponseWriter, r *http.Request, err error, explain func(error) *Error, log *slog.Logger, name string) {
	var e *Error
	if !errors.As(err, &e) && explain != nil {
		e = explain(err)
	}
	switch {
	case e != nil:
	case db.IsUnavailable(err):
		ops.NoteUnavailable(r.Context())
		w.Header().Set("Retry-After", ops.UnavailableRetryAfter)
		e = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
			Description: "The service is temporarily unavailable. Try again in a moment."}
	default:
		if log == nil {
			log = slog.Default()
		}
		log.ErrorContext(r.Context(), name, "request_id", ops.RequestID(r.Context()), "route", r.Pattern, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "Internal error."}
	}
	if c := e.challenge(); c != "" {
		w.Header().Set("WWW-Authenticate", c)
	}
	WriteJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description}) //nolint:errcheck // a map of strings marshals
}

// WriteJSON answers v as JSON with status. It fails only before anything
// is written, so Fail can still answer; an error writing the body means
// the client is gone.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client is gone
	return nil
}
