package verify

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/web"
)

// Handler serves the page a verification link opens.
type Handler struct {
	// Service is nil when mail is off: the page says so.
	Service   *Service
	Templates *web.Templates
	Errors    *pages.Errors
	// Sessions signs the page's form (BoundCSRFToken) and says whether
	// its cookie is for https only.
	Sessions *sessions.Manager
	// Signups, when set, is self-registration (IDP_SELF_SIGNUP).
	Signups *Signups
}

// Mount registers the link's routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+LinkPath, h.page)
	mux.HandleFunc("POST "+LinkPath, h.confirm)
	h.mountSignup(mux)
}

type pageData struct {
	Token, Email string
	Change, Done bool
}

// The form needs no sign-in (the link is opened wherever the mail is
// read), so its CSRF token is bound to a cookie of its own: a random value
// set with the page, and the form carries its HMAC (a signed double
// submit). Another site can neither read the cookie nor compute the HMAC.
const csrfCookie = "idp_email_verify"

func (h *Handler) issueCSRF(w http.ResponseWriter) string { return h.issueCSRFAt(w, LinkPath) }

func (h *Handler) issueCSRFAt(w http.ResponseWriter, path string) string {
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: path, HttpOnly: true, Secure: h.Sessions.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: 3600})
	return h.Sessions.BoundCSRFToken(csrfCookie, v)
}

func (h *Handler) checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	return err == nil && h.Sessions.CheckBoundCSRF(csrfCookie, c.Value, r.PostFormValue("csrf_token"))
}

// problem explains a link that does not work; ok false for an error of
// ours.
func problem(err error) (status int, msg, hint string, ok bool) {
	again := "Ask your administrator for a new link, or, to change your address, ask again on your account page."
	switch {
	case errors.Is(err, ErrUnknownLink):
		return http.StatusBadRequest, "This confirmation link is not valid. Nothing was changed.",
			"Open the link exactly as it is in the mail. " + again, true
	case errors.Is(err, ErrUsedLink):
		return http.StatusGone, "This confirmation link was already used. Nothing was changed.", "Each link works once.", true
	case errors.Is(err, ErrExpiredLink):
		return http.StatusGone, "This confirmation link has expired. Nothing was changed.", "A link works for 7 days. " + again, true
	case errors.Is(err, ErrStaleLink):
		return http.StatusGone, "This confirmation link no longer works: the account's address changed after it was sent. Nothing was changed.", again, true
	case errors.Is(err, ErrTaken):
		return http.StatusConflict, "This address cannot be used for your account. Nothing was changed.",
			"Choose another address on your account page.", true
	}
	return 0, "", "", false
}

func (h *Handler) off(w http.ResponseWriter) {
	h.Templates.Error(w, http.StatusNotFound, "Confirming addresses by mail is off here.", "Ask an administrator.")
}

// page checks the link and shows the Confirm button. It changes nothing:
// mail scanners and link previews fetch it too.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if h.Service == nil {
		h.off(w)
		return
	}
	token := r.URL.Query().Get("token")
	l, err := h.Service.Check(r.Context(), token)
	if status, msg, hint, ok := problem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "verify-email", "Confirm your address", h.issueCSRF(w),
		pageData{Token: token, Email: l.Email, Change: l.Change})
}

// confirm spends the link (Service.Confirm).
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	if h.Service == nil {
		h.off(w)
		return
	}
	if !h.checkCSRF(r) {
		h.Errors.StaleForm(w, "Open the link from the mail again and confirm from there.")
		return
	}
	l, err := h.Service.Confirm(r.Context(), r.PostFormValue("token"))
	if status, msg, hint, ok := problem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Path: LinkPath, MaxAge: -1, HttpOnly: true, Secure: h.Sessions.Secure})
	h.Templates.Render(w, http.StatusOK, "verify-email", "Address confirmed", "",
		pageData{Email: l.Email, Change: l.Change, Done: true})
}
