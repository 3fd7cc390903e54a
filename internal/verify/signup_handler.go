package verify

import (
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/users"
)

func (h *Handler) mountSignup(mux *http.ServeMux) {
	mux.HandleFunc("GET /signup", h.signupPage)
	mux.HandleFunc("POST /signup", h.signupSubmit)
	mux.HandleFunc("GET "+SignupPath, h.signupLinkPage)
	mux.HandleFunc("POST "+SignupPath, h.signupConfirm)
}

type signupData struct {
	Email, Name, Error string
	Domains            string
	Sent               bool
	// The confirmation page: the link's token, and Done once the
	// account is made.
	Token string
	Done  bool
}

func (h *Handler) signupOff(w http.ResponseWriter) {
	h.Templates.Error(w, http.StatusNotFound, "Signing up is not open here.", "Ask an administrator for an account.")
}

// The sign-up form and its link's page post to paths under /signup, so
// their CSRF cookie is scoped there.
const signupCookiePath = "/signup"

func (h *Handler) renderSignup(w http.ResponseWriter, status int, d signupData) {
	d.Domains = strings.Join(h.Signups.Domains, ", ")
	h.Templates.Render(w, status, "signup", "Create an account", h.issueCSRFAt(w, signupCookiePath), d)
}

func (h *Handler) signupPage(w http.ResponseWriter, r *http.Request) {
	if h.Signups == nil {
		h.signupOff(w)
		return
	}
	h.renderSignup(w, http.StatusOK, signupData{})
}

// signupSubmit mails the link. An address that has an account gets the
// same answer as a new one (Signups.Request).
func (h *Handler) signupSubmit(w http.ResponseWriter, r *http.Request) {
	if h.Signups == nil {
		h.signupOff(w)
		return
	}
	if !h.checkCSRF(r) {
		h.Errors.StaleForm(w, "Open the sign-up page again and retry from there.")
		return
	}
	email, name := r.PostFormValue("email"), r.PostFormValue("name")
	err := h.Signups.Request(r.Context(), email, name, r.PostFormValue("new_password"), clientIP(r))
	fail := func(status int, msg string) {
		h.renderSignup(w, status, signupData{Email: email, Name: name, Error: msg})
	}
	var throttled *ThrottledError
	switch {
	case err == nil:
		h.renderSignup(w, http.StatusOK, signupData{Email: email, Sent: true})
	case errors.Is(err, users.ErrInvalidEmail):
		fail(http.StatusBadRequest, "That is not an email address: type one like name@example.com.")
	case errors.Is(err, ErrDomain):
		fail(http.StatusBadRequest, "Signing up is open only to addresses at "+strings.Join(h.Signups.Domains, ", ")+".")
	case errors.Is(err, users.ErrInvalidName):
		fail(http.StatusBadRequest, "The name is too long, or has control characters.")
	case errors.As(err, &throttled):
		pages.SetRetryAfter(w, pages.Problem{Status: http.StatusTooManyRequests, RetryAfter: throttled.RetryAfter})
		fail(http.StatusTooManyRequests, "Too many sign-ups from your network. Try again in "+pages.Duration(throttled.RetryAfter)+".")
	default:
		if p, known := pages.Explain(err); known { // the password policy
			fail(p.Status, p.Message)
			return
		}
		h.Errors.Internal(w, r, err)
	}
}

// signupLinkPage shows the Confirm button; it changes nothing.
func (h *Handler) signupLinkPage(w http.ResponseWriter, r *http.Request) {
	if h.Signups == nil {
		h.signupOff(w)
		return
	}
	token := r.URL.Query().Get("token")
	email, err := h.Signups.CheckSignup(r.Context(), token)
	if status, msg, hint, ok := signupProblem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "signup-confirm", "Create your account", h.issueCSRFAt(w, signupCookiePath),
		signupData{Email: email, Token: token})
}

func (h *Handler) signupConfirm(w http.ResponseWriter, r *http.Request) {
	if h.Signups == nil {
		h.signupOff(w)
		return
	}
	if !h.checkCSRF(r) {
		h.Errors.StaleForm(w, "Open the link from the mail again and confirm from there.")
		return
	}
	u, err := h.Signups.ConfirmSignup(r.Context(), r.PostFormValue("token"))
	if status, msg, hint, ok := signupProblem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "signup-confirm", "Account created", "", signupData{Email: u.Email, Done: true})
}

func signupProblem(err error) (status int, msg, hint string, ok bool) {
	again := "Sign up again to get a new link."
	switch {
	case errors.Is(err, ErrUnknownLink):
		return http.StatusBadRequest, "This sign-up link is not valid. No account was made.", "Open the link exactly as it is in the mail. " + again, true
	case errors.Is(err, ErrUsedLink):
		return http.StatusGone, "This sign-up link was already used. No account was made by it now.", "Sign in with the account it made.", true
	case errors.Is(err, ErrExpiredLink):
		return http.StatusGone, "This sign-up link has expired. No account was made.", "A link works for 24 hours. " + again, true
	case errors.Is(err, ErrTaken):
		return http.StatusConflict, "This address has an account already. No account was made.", "Sign in, or reset your password.", true
	}
	return 0, "", "", false
}

// clientIP is the client's address (the ops middleware has put the
// X-Forwarded-For client in RemoteAddr behind a trusted proxy).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
