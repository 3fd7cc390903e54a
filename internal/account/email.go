package account

import (
	"errors"
	"net/http"

	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/internal/verify"
)

// The change of address: the new address and the current password (so a
// stolen session cookie alone cannot move the account, and with it the
// password reset, to another inbox) mail a link to the new address; the
// account moves only when it is confirmed there (package verify).

func (h *Handler) mountEmail(mux *http.ServeMux) {
	mux.HandleFunc("GET /account/email", h.emailPage)
	mux.HandleFunc("POST /account/email", h.emailSubmit)
}

type emailData struct {
	Current, Email, Error string
	Sent, Off             bool
}

func (h *Handler) renderEmail(w http.ResponseWriter, r *http.Request, userID string, status int, d emailData) {
	u, err := h.Users.ByID(r.Context(), userID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	d.Current, d.Off = u.Email, h.Email == nil
	h.Templates.Render(w, status, "account-email", "Change your email address", h.Sessions.CSRFToken(r), d)
}

func (h *Handler) emailPage(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedIn(w, r)
	if !ok {
		return
	}
	h.renderEmail(w, r, s.UserID, http.StatusOK, emailData{})
}

// emailSubmit asks for the change. An address another account has gets
// the same answer as a free one (verify.Service.RequestChange).
func (h *Handler) emailSubmit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	if h.Email == nil {
		h.renderEmail(w, r, s.UserID, http.StatusNotFound, emailData{})
		return
	}
	email := r.PostFormValue("email")
	fail := func(status int, msg string) {
		h.renderEmail(w, r, s.UserID, status, emailData{Email: email, Error: msg + " Your address was not changed."})
	}
	if _, err := users.NormalizeEmail(email); err != nil {
		fail(http.StatusBadRequest, "That is not an email address: type one like name@example.com.")
		return
	}
	if p, ok := h.checkPassword(w, r, s, r.PostFormValue("current_password")); !ok {
		if p.Status != 0 {
			fail(p.Status, p.Message)
		}
		return
	}
	err := h.Email.RequestChange(r.Context(), s.UserID, email)
	switch {
	case errors.Is(err, verify.ErrSameEmail):
		fail(http.StatusBadRequest, "That is already your address.")
		return
	case errors.Is(err, users.ErrInvalidEmail):
		fail(http.StatusBadRequest, "That is not an email address: type one like name@example.com.")
		return
	case err != nil:
		h.Errors.Internal(w, r, err)
		return
	}
	h.renderEmail(w, r, s.UserID, http.StatusOK, emailData{Email: email, Sent: true})
}
