package admin

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/bearer"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/ssf"
	"github.com/idp/idp/internal/users"
)

// Scope is the OAuth scope an access token needs for the API. The
// authorization endpoint grants it only to an administrator's two-factor
// session, the token endpoint only to an admin service account.
const Scope = clients.AdminScope

// API serves /admin/api:
//
//	GET    /admin/api/users?email=E            the account (404 if none, 400 without email)
//	POST   /admin/api/users                     create an account from {"email", "name", "password",
//	                                            "admin", "temporary"} (201; 409 if the email is taken)
//	GET    /admin/api/users/{id}                the account
//	DELETE /admin/api/users/{id}                delete the account, ending its sessions; the counts
//	                                            (409 for the administrator's own)
//	GET    /admin/api/users/{id}/sessions       live sessions, their apps and notifications;
//	                                            ?include=revoked adds the recently revoked ones
//	DELETE /admin/api/users/{id}/sessions       revoke all sessions and tokens; the counts
//	POST   /admin/api/users/{id}/disable        disable and revoke; the account and the counts
//	POST   /admin/api/users/{id}/enable         enable; the account
//	GET    /admin/api/users/{id}/passkeys       the user's passkeys
//	DELETE /admin/api/users/{id}/passkeys/{pid} remove one, ending every session of the user; the counts
//	POST   /admin/api/outbox/{id}/retry         retry a logout notification now (202)
//	GET    /admin/api/signals/streams           the Shared Signals streams: status, backlog, last error
//	GET    /admin/api/signals/streams/{id}      one stream
//	POST   /admin/api/signals/streams/{id}/retry  retry its undelivered events now (202; 409 unless enabled)
//	POST   /admin/api/signals/streams/{id}/status {"status": "enabled"|"paused"|"disabled", "reason"}:
//	                                            set it, the receiver told (stream-updated); the stream
//	GET    /admin/api/audit                     the audit log, newest first:
//	                                            ?user=ID (about or by that user), ?before=N, ?limit=N
//
// Errors are JSON {"error", "error_description"}; an unknown or malformed
// id is 404. Who may call is authenticate's to say.
type API struct {
	Service *Service
	// Tokens introspects bearer tokens (the fosite provider).
	Tokens fosite.OAuth2Provider
	// MaxAuthAge is how long after a person's sign-in their tokens are
	// accepted (DefaultMaxAuthAge when zero).
	MaxAuthAge time.Duration
	// RequirePasskey refuses a person's token unless its sign-in was
	// phishing-resistant (acr urn:idp:acr:phr: a passkey), with RFC 9470's
	// insufficient_user_authentication naming the acr to ask for.
	// Service accounts' tokens have no sign-in and are not affected.
	RequirePasskey bool
	Logger         *slog.Logger
}

// handler is an admin route: it runs after authentication, for the caller
// c, and returns an error for fail to map to a status.
type handler func(w http.ResponseWriter, r *http.Request, c caller) error

// Mount registers the admin routes.
func (a *API) Mount(mux *http.ServeMux) {
	routes := map[string]handler{
		"GET /admin/api/users":                        a.findUser,
		"POST /admin/api/users":                       a.createUser,
		"GET /admin/api/users/{id}":                   a.user,
		"DELETE /admin/api/users/{id}":                a.deleteUser,
		"GET /admin/api/users/{id}/sessions":          a.listSessions,
		"DELETE /admin/api/users/{id}/sessions":       a.revokeSessions,
		"POST /admin/api/users/{id}/disable":          a.disable,
		"POST /admin/api/users/{id}/enable":           a.enable,
		"GET /admin/api/users/{id}/passkeys":          a.passkeys,
		"DELETE /admin/api/users/{id}/passkeys/{pid}": a.removePasskey,
		"POST /admin/api/users/{id}/password":         a.setPassword,
		"POST /admin/api/outbox/{id}/retry":           a.retry,
		"GET /admin/api/signals/streams":              a.signalStreams,
		"GET /admin/api/signals/streams/{id}":         a.signalStream,
		"POST /admin/api/signals/streams/{id}/retry":  a.retrySignalStream,
		"POST /admin/api/signals/streams/{id}/status": a.setSignalStreamStatus,
		"GET /admin/api/audit":                        a.auditLog,
		"/admin/api/":                                 a.notFound,
	}
	for pattern, h := range routes {
		mux.Handle(pattern, a.authenticated(h))
	}
}

func (a *API) findUser(w http.ResponseWriter, r *http.Request, _ caller) error {
	email := strings.TrimSpace(r.URL.Query().Get("email"))
	if email == "" {
		return bearer.BadRequest("The email query parameter is required.")
	}
	u, err := a.Service.FindUser(r.Context(), email)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, u)
}

// createUser creates an account from a JSON body. The password is
// temporary unless "temporary" is false: whoever calls the API knows it, so
// the person replaces it at the first sign-in.
func (a *API) createUser(w http.ResponseWriter, r *http.Request, c caller) error {
	var body struct {
		Email     string `json:"email"`
		Name      string `json:"name"`
		Password  string `json:"password"`
		Admin     bool   `json:"admin"`
		Temporary *bool  `json:"temporary"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return bearer.BadRequest(`The body must be JSON: {"email": "…", "name": "…", "password": "…", "admin": false, "temporary": true}.`)
	}
	temporary := body.Temporary == nil || *body.Temporary
	acc, err := a.Service.CreateUser(r.Context(), users.NewUser{Email: body.Email, Name: body.Name, Password: body.Password,
		Admin: body.Admin, MustChangePassword: temporary}, c.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/admin/api/users/"+acc.ID)
	return bearer.WriteJSON(w, http.StatusCreated, acc)
}

// decodeJSON reads a small JSON body into v, refusing unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (a *API) passkeys(w http.ResponseWriter, r *http.Request, _ caller) error {
	list, err := a.Service.Passkeys(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"passkeys": list})
}

func (a *API) removePasskey(w http.ResponseWriter, r *http.Request, c caller) error {
	res, err := a.Service.RemovePasskey(r.Context(), r.PathValue("id"), r.PathValue("pid"), c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, res)
}

func (a *API) user(w http.ResponseWriter, r *http.Request, _ caller) error {
	u, err := a.Service.User(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, u)
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request, _ caller) error {
	var opt ListOptions
	switch inc := r.URL.Query().Get("include"); inc {
	case "":
	case "revoked":
		opt.Revoked = true
	default:
		return bearer.BadRequest(`include must be "revoked" or absent.`)
	}
	list, err := a.Service.ListSessions(r.Context(), r.PathValue("id"), opt)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, list)
}

func (a *API) revokeSessions(w http.ResponseWriter, r *http.Request, c caller) error {
	res, err := a.Service.RevokeSessions(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, res)
}

func (a *API) disable(w http.ResponseWriter, r *http.Request, c caller) error {
	u, res, err := a.Service.Disable(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"user": u, "revoked": res})
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c caller) error {
	res, err := a.Service.DeleteUser(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "deleted": true, "revoked": res})
}

func (a *API) enable(w http.ResponseWriter, r *http.Request, c caller) error {
	u, err := a.Service.Enable(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"user": u})
}

// setPassword sets a password from a JSON body {"password": "…",
// "temporary": true}; temporary defaults to true, as the administrator
// knows the password.
func (a *API) setPassword(w http.ResponseWriter, r *http.Request, c caller) error {
	var body struct {
		Password  string `json:"password"`
		Temporary *bool  `json:"temporary"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return bearer.BadRequest(`The body must be JSON: {"password": "…", "temporary": true}.`)
	}
	temporary := body.Temporary == nil || *body.Temporary
	res, err := a.Service.SetPassword(r.Context(), r.PathValue("id"), body.Password, c.actor(), temporary)
	if err != nil {
		return err
	}
	return bearer.WriteJSON(w, http.StatusOK, map[string]any{"temporary": temporary, "revoked": res})
}

func (a *API) retry(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := a.Service.RetryNotification(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	// Accepted: the workers deliver it, and the sessions listing shows how
	// that went.
	return bearer.WriteJSON(w, http.StatusAccepted, map[string]any{"id": r.PathValue("id"), "state": StatePending})
}

// auditLog pages through the audit log: {"entries": [...], "next_before":
// N}, where next_before, present when the page is full, is the ?before of
// the next page.
func (a *API) auditLog(w http.ResponseWriter, r *http.Request, _ caller) error {
	query := r.URL.Query()
	before, err := wholeNumber(query, "before", 1<<63-1)
	if err != nil {
		return err
	}
	limit, err := wholeNumber(query, "limit", audit.MaxLimit)
	if err != nil {
		return err
	}
	q := audit.Query{UserID: query.Get("user"), Before: before, Limit: int(limit)}
	if query.Has("user") && q.UserID == "" {
		return bearer.BadRequest("user must be a user id.")
	}
	entries, err := a.Service.AuditLog(r.Context(), q)
	if err != nil {
		return err
	}
	page := struct {
		Entries    []audit.Entry `json:"entries"`
		NextBefore int64         `json:"next_before,omitempty"`
	}{Entries: entries}
	if limit := cmp.Or(q.Limit, audit.DefaultLimit); len(entries) == limit {
		page.NextBefore = entries[len(entries)-1].ID
	}
	return bearer.WriteJSON(w, http.StatusOK, page)
}

// wholeNumber reads the optional query parameter name, a whole number from
// 1 to max; absent, it is 0.
func wholeNumber(query url.Values, name string, max int64) (int64, error) {
	v := query.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > max {
		return 0, bearer.BadRequest(fmt.Sprintf("%s must be a whole number from 1 to %d.", name, max))
	}
	return n, nil
}

func (a *API) notFound(http.ResponseWriter, *http.Request, caller) error {
	return bearer.NotFound("No such admin API endpoint.")
}

var (
	errInsufficientScope = bearer.InsufficientScope(Scope,
		"The access token lacks the admin scope, or its holder is no longer an enabled administrator.")
	errNotServiceAccount = bearer.InsufficientScope(Scope, "The client is not (or no longer) an admin service account.")
)

// fail answers err (bearer.Fail). Domain errors read as they do on every
// page (pages.Explain).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	bearer.Fail(w, r, err, explain, a.Logger, "admin api")
}

// explain is the status of each domain error the API may meet; nil for
// one it does not know.
func explain(err error) *bearer.Error {
	var invalid *ssf.InvalidError
	problem, explained := pages.Explain(err)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return bearer.NotFound("No such user.")
	case explained:
		return &bearer.Error{Status: problem.Status, Code: errorCode(problem.Status), Description: problem.Message}
	case errors.Is(err, outbox.ErrNotFound):
		return bearer.NotFound("No undelivered notification with that id.")
	case errors.Is(err, ssf.ErrNotFound):
		return bearer.NotFound("No Shared Signals stream with that id.")
	case errors.Is(err, ssf.ErrNotEnabled):
		return bearer.Conflict("The stream is paused or disabled: enable it first (enabling a paused stream delivers what it held).")
	case errors.As(err, &invalid):
		return bearer.BadRequest(strings.ToUpper(invalid.Message[:1]) + invalid.Message[1:] + ".")
	case errors.Is(err, passkey.ErrNotFound):
		return bearer.NotFound("The user has no passkey with that id.")
	case errors.Is(err, ErrOwnAccount):
		return bearer.Conflict("An administrator cannot delete their own account; another administrator can.")
	}
	return nil
}

// errorCode is the error field of a domain error's status.
func errorCode(status int) string {
	switch status {
	case http.StatusConflict:
		return "conflict"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	}
	return "invalid_request"
}
