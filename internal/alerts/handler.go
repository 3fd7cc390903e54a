package alerts

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/web"
)

// Handler serves the "This wasn't me" page.
type Handler struct {
	Service   *Service
	Templates *web.Templates
	Errors    *pages.Errors
	Logger    *slog.Logger
}

// Mount registers the page.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+LinkPath, h.page)
	mux.HandleFunc("POST "+LinkPath, h.submit)
}

type reportData struct {
	Token string
	// One: the link ends one session (a new device); otherwise all.
	One bool
}

type reportedData struct {
	One      bool
	Ended    int
	Continue string
}

// linkProblem explains a link that does not work; ok false for an error
// of ours.
func linkProblem(err error) (status int, msg, hint string, ok bool) {
	reset := "If you think someone else can sign in to your account, choose a new password: “Forgot your password?” on the sign-in page."
	switch {
	case errors.Is(err, ErrUnknownLink):
		return http.StatusBadRequest, "This link is not valid.", "Open the link exactly as it is in the mail. " + reset, true
	case errors.Is(err, ErrUsedLink):
		return http.StatusGone, "This link was already used.", "Each link works once; what it ended stays ended. " + reset, true
	case errors.Is(err, ErrExpiredLink):
		return http.StatusGone, "This link has expired.", "A link works for 7 days. " + reset, true
	}
	return 0, "", "", false
}

// page is where the link leads. It changes nothing (mail scanners fetch
// links): it checks the link and shows one button, whose POST carries the
// token and a CSRF token tied to this browser's device cookie.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	l, err := h.Service.Check(r.Context(), token)
	if status, msg, hint, ok := linkProblem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	dev := h.Service.ensureDevice(w, r)
	h.Templates.Render(w, http.StatusOK, "alert-report", "This wasn't me", h.Service.Sessions.BoundCSRFToken(csrfPurpose, dev),
		reportData{Token: token, One: l.SID != ""})
}

// submit ends the session(s) and leads to the password reset.
func (h *Handler) submit(w http.ResponseWriter, r *http.Request) {
	if !h.Service.Sessions.CheckBoundCSRF(csrfPurpose, h.Service.device(r), r.PostFormValue("csrf_token")) {
		h.Templates.Error(w, http.StatusForbidden, "This form has expired.", "Open the link from the mail again.")
		return
	}
	l, res, err := h.Service.Report(r.Context(), r.PostFormValue("token"))
	if status, msg, hint, ok := linkProblem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Logger.Info("alerts: reported", "user", l.UserID, "event", l.Event, "sessions", res.Sessions)
	h.Templates.Render(w, http.StatusOK, "alert-reported", "Sessions ended", "",
		reportedData{One: l.SID != "", Ended: res.Sessions, Continue: ForgotPath})
}
