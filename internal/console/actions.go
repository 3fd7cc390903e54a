package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// Every action answers with a redirect back to the user's page (so a
// reload does not post again), or with the page or an error page saying
// why nothing was done.

func (h *Handler) revokeSessions(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	// Ending an administrator's sessions needs a fresh code: it could
	// shut out the only one who would notice.
	if !h.confirmedFor(w, r, &adm, id, onlyAdmins) {
		return
	}
	res, err := h.Admin.RevokeSessions(r.Context(), id, actor(adm))
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "revoked", &res)
}

func (h *Handler) resetMFA(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !h.confirmedFor(w, r, &adm, id, anyUser) {
		return
	}
	res, err := h.Admin.ResetMFA(r.Context(), id, actor(adm))
	if errors.Is(err, mfa.ErrNotEnrolled) {
		h.renderUser(w, r, adm, id, http.StatusConflict, userData{
			Error: "This user has no two-factor authentication set up, so there was nothing to reset. Nothing was changed."})
		return
	}
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "mfa-reset", &res)
}

// removePasskey removes one of the user's passkeys; every session of the
// user ends with it.
func (h *Handler) removePasskey(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	res, err := h.Admin.RemovePasskey(r.Context(), id, r.PathValue("pid"), actor(adm))
	if errors.Is(err, passkey.ErrNotFound) {
		h.renderUser(w, r, adm, id, http.StatusNotFound, userData{
			Error: "That passkey is not among this user's (it may be removed already). Nothing was changed."})
		return
	}
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "passkey-removed", &res)
}

// setPassword gives the user a temporary password, for a forgotten one:
// they replace it at their next sign-in, and every session ends now.
func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !h.confirmedFor(w, r, &adm, id, anyUser) {
		return
	}
	res, err := h.Admin.SetPassword(r.Context(), id, r.PostFormValue("new_password"), actor(adm), true)
	var pe *users.PolicyError
	if errors.As(err, &pe) {
		// The policy's reason as everywhere, said of the password an
		// administrator hands out.
		h.renderUser(w, r, adm, id, http.StatusBadRequest, userData{
			Error: "The temporary password " + pe.Reason + ". Nothing was changed."})
		return
	}
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "password-set", &res)
}

// createUser creates an account with a temporary password, which the
// person replaces at the first sign-in: the administrator knows it.
func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	var d homeData
	d.Heading = "Newest users"
	d.New.Email, d.New.Name = strings.TrimSpace(r.PostFormValue("email")), strings.TrimSpace(r.PostFormValue("name"))
	d.New.Admin = r.PostFormValue("admin") == "on"
	// A new administrator needs a fresh code; a new user does not.
	if d.New.Admin && !h.confirmed(w, r, &adm, func(status int, msg string) {
		d.Error, d.NeedCode = msg, h.needsCode(adm)
		h.renderHome(w, r, status, "", d)
	}) {
		return
	}
	acc, err := h.Admin.CreateUser(r.Context(), users.NewUser{Email: d.New.Email, Name: d.New.Name,
		Password: r.PostFormValue("new_password"), Admin: d.New.Admin, MustChangePassword: true}, actor(adm))
	if err == nil {
		h.back(w, r, acc.ID, "created", nil)
		return
	}
	p, known := pages.Explain(err)
	if !known {
		h.Errors.Internal(w, r, err)
		return
	}
	d.Error = p.Message
	var pe *users.PolicyError
	if errors.As(err, &pe) {
		d.Error = "The temporary password " + pe.Reason + "."
	}
	d.Error += " No account was created."
	d.NeedCode = h.needsCode(adm)
	h.renderHome(w, r, p.Status, "", d)
}

// deleteUser deletes the account once the administrator has typed its
// email: a button alone is too easy to press for what cannot be undone.
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if id == adm.ID {
		h.renderUser(w, r, adm, id, http.StatusConflict, userData{
			Error: "You cannot delete your own account; another administrator can. Nothing was changed."})
		return
	}
	if !h.confirmedFor(w, r, &adm, id, anyUser) {
		return
	}
	u, err := h.Admin.User(r.Context(), id)
	if !h.handled(w, r, err) {
		return
	}
	if !strings.EqualFold(strings.TrimSpace(r.PostFormValue("confirm_email")), u.Email) {
		h.renderUser(w, r, adm, id, http.StatusBadRequest, userData{
			Error: "To delete the account, type its email address exactly. Nothing was changed."})
		return
	}
	res, err := h.Admin.DeleteUser(r.Context(), id, actor(adm))
	if !h.handled(w, r, err) {
		return
	}
	h.backTo(w, r, "/admin", "deleted", &res) // the user's page is gone
}

func (h *Handler) disable(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	// Refused rather than done: an administrator who disables their own
	// account is locked out of the console that could undo it.
	if id == adm.ID {
		h.renderUser(w, r, adm, id, http.StatusConflict, userData{
			Error: "You cannot disable your own account from the console: nobody could sign in to enable it again here. " +
				"Ask another administrator, or use `idp users disable`. Nothing was changed."})
		return
	}
	if !h.confirmedFor(w, r, &adm, id, onlyAdmins) {
		return
	}
	_, res, err := h.Admin.Disable(r.Context(), id, actor(adm))
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "disabled", &res)
}

// setRole makes the user an administrator or takes the role away
// ("admin" is "true" or "false": the state wanted, so a stale page cannot
// flip it the wrong way).
func (h *Handler) setRole(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	want, err := strconv.ParseBool(r.PostFormValue("admin"))
	if err != nil {
		h.renderUser(w, r, adm, id, http.StatusBadRequest, userData{
			Error: "The form did not say whether to make them an administrator. Nothing was changed."})
		return
	}
	// Refused rather than done, as for disabling: the console would shut
	// its only user out.
	if id == adm.ID && !want {
		h.renderUser(w, r, adm, id, http.StatusConflict, userData{
			Error: "You cannot remove your own administrator role; another administrator can. Nothing was changed."})
		return
	}
	if !h.confirmedFor(w, r, &adm, id, anyUser) {
		return
	}
	_, err = h.Admin.SetAdmin(r.Context(), id, want, actor(adm))
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, map[bool]string{true: "promoted", false: "demoted"}[want], nil)
}

func (h *Handler) enable(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	_, err := h.Admin.Enable(r.Context(), id, actor(adm))
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "enabled", nil)
}

// retry makes one of the user's undelivered logout notifications due now.
// The notification must belong to the user whose page the button is on, so
// a mistyped or stale URL changes nothing.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	id := r.PathValue("id")
	nid, err := strconv.ParseInt(r.PathValue("nid"), 10, 64)
	if err != nil || nid <= 0 {
		h.noSuchNotification(w)
		return
	}
	list, err := h.Admin.ListSessions(ctx, id, admin.ListOptions{Revoked: true})
	if !h.handled(w, r, err) {
		return
	}
	if !hasUndelivered(list, nid) {
		h.noSuchNotification(w)
		return
	}
	err = h.Admin.RetryNotification(ctx, strconv.FormatInt(nid, 10), actor(adm))
	if errors.Is(err, outbox.ErrNotFound) {
		// Delivered between the listing and the retry.
		h.noSuchNotification(w)
		return
	}
	if !h.handled(w, r, err) {
		return
	}
	h.back(w, r, id, "retry", nil)
}

func hasUndelivered(list admin.SessionList, nid int64) bool {
	for _, s := range list.Sessions {
		for _, a := range s.Apps {
			if slices.ContainsFunc(a.Notifications, func(n admin.Notification) bool {
				return n.ID == nid && n.State != admin.StateDelivered
			}) {
				return true
			}
		}
	}
	return false
}

func (h *Handler) noSuchNotification(w http.ResponseWriter) {
	h.Templates.Error(w, http.StatusNotFound,
		"That logout notification is not one of this user's undelivered notifications (it may have been delivered since). Nothing was changed.",
		"Go back to the user's page and reload it to see each notification's state.")
}

// handled answers an error of an action and reports whether there was
// none.
func (h *Handler) handled(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, users.ErrNotFound):
		h.noSuchUser(w)
	default:
		h.Errors.Internal(w, r, err)
	}
	return false
}

// back redirects to the user's page with a notice and, for an action
// that ends sessions, the counts of what it ended.
func (h *Handler) back(w http.ResponseWriter, r *http.Request, id, notice string, res *sessions.Result) {
	h.backTo(w, r, userPath(id), notice, res)
}

// backTo is back to the console page at path.
func (h *Handler) backTo(w http.ResponseWriter, r *http.Request, path, notice string, res *sessions.Result) {
	q := url.Values{"notice": {notice}}
	if res != nil {
		q.Set("sessions", strconv.Itoa(res.Sessions))
		q.Set("notifications", strconv.Itoa(res.Notifications))
	}
	http.Redirect(w, r, path+"?"+q.Encode(), http.StatusSeeOther)
}
