package login

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/reset"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// The password reset: "Forgot your password?" on the sign-in page asks for
// an address (reset.Service mails a link); the link's page, on POST, spends
// the link and moves a sign-in flow past the password to what the account
// still owes: its second factor if it has one (or, where 2FA is required,
// setting one up), then the new password, whose form ends every other
// session as any password change does (newPasswordSubmit). The flow is
// the sign-in's own, so none of its checks is skipped or written twice.
func (h *Handler) mountReset(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/forgot", h.forgotPage)
	mux.HandleFunc("POST /login/forgot", h.forgotSubmit)
	mux.HandleFunc("GET /login/reset", h.resetPage)
	mux.HandleFunc("POST /login/reset", h.resetSubmit)
}

// Steps of the reset forms, as Observe is told them.
const (
	stepForgot = "forgot"
	stepReset  = "reset"
)

type forgotData struct {
	Email, Error string
	Minutes      int
	// Off: mail is not configured; the page says to ask an administrator.
	Off bool
}

func (h *Handler) forgotData(email, msg string) forgotData {
	return forgotData{Email: email, Error: msg, Minutes: int(reset.LinkLifetime / time.Minute), Off: h.Reset == nil}
}

// forgotPage asks for the address. It needs a sign-in flow for its CSRF
// token: the sign-in page's, or, opened on its own, a new one.
func (h *Handler) forgotPage(w http.ResponseWriter, r *http.Request) {
	if h.Reset == nil {
		h.Templates.Render(w, http.StatusOK, "forgot", "Reset your password", "", h.forgotData("", ""))
		return
	}
	f, err := h.loadFlow(r.Context(), r)
	if errors.Is(err, ErrNoFlow) {
		if f, _, err = h.begin(r.Context(), w, Start{}); err != nil {
			h.internal(w, r, "", err)
			return
		}
	} else if err != nil {
		h.internal(w, r, "", err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "forgot", "Reset your password", f.CSRF, h.forgotData("", ""))
}

// forgotSubmit asks for a link. Known address or not, the answer is the
// same page (reset.Service.Request does the same work either way).
func (h *Handler) forgotSubmit(w http.ResponseWriter, r *http.Request) {
	if h.Reset == nil {
		h.Templates.Error(w, http.StatusNotFound, "Password reset by mail is off here.", "Ask an administrator to set a new password for you.")
		return
	}
	f, ok := h.stepFlow(w, r, "", stepForgot)
	if !ok {
		return
	}
	email := r.PostFormValue("email")
	err := h.Reset.Request(r.Context(), email, clientIP(r))
	var throttled *reset.ThrottledError
	switch {
	case errors.Is(err, users.ErrInvalidEmail):
		h.observe(stepForgot, outcomeInvalid)
		h.Templates.Render(w, http.StatusBadRequest, "forgot", "Reset your password", f.CSRF,
			h.forgotData(email, "That is not an email address. Type the address you sign in with, like name@example.com."))
		return
	case errors.As(err, &throttled):
		h.observe(stepForgot, outcomeThrottled)
		pages.SetRetryAfter(w, pages.Problem{Status: http.StatusTooManyRequests, RetryAfter: throttled.RetryAfter})
		h.Templates.Render(w, http.StatusTooManyRequests, "forgot", "Reset your password", f.CSRF,
			h.forgotData(email, "Too many reset links were asked for this address or from your network. Try again in "+
				pages.Duration(throttled.RetryAfter)+"; a link sent before still works."))
		return
	case err != nil:
		h.internal(w, r, stepForgot, err)
		return
	}
	h.observe(stepForgot, outcomeNextStep)
	h.Templates.Render(w, http.StatusOK, "forgot-sent", "Check your mail", "", h.forgotData(email, ""))
}

type resetData struct {
	Token        string
	SecondFactor bool
}

// linkProblem explains a link that does not work; ok false for an error
// of ours.
func linkProblem(err error) (status int, msg, hint string, ok bool) {
	again := "Ask for a new link on the sign-in page (“Forgot your password?”)."
	switch {
	case errors.Is(err, reset.ErrUnknownLink):
		return http.StatusBadRequest, "This password reset link is not valid.", "Open the link exactly as it is in the mail, or: " + again, true
	case errors.Is(err, reset.ErrUsedLink):
		return http.StatusGone, "This password reset link was already used.", "Each link works once. " + again, true
	case errors.Is(err, reset.ErrExpiredLink):
		return http.StatusGone, "This password reset link has expired.", "A link works for 30 minutes. " + again, true
	case errors.Is(err, reset.ErrStaleLink):
		return http.StatusGone, "This password reset link no longer works: the password changed after it was sent.",
			"If you did not change it, " + again, true
	}
	return 0, "", "", false
}

// resetPage is where the mailed link leads. It changes nothing (mail
// scanners fetch links): it checks the link and shows one button, whose
// POST carries the token with the CSRF token of a sign-in flow in this
// browser. The flow of a sign-in this browser has in progress is kept,
// so the person lands in the app they were signing in to.
func (h *Handler) resetPage(w http.ResponseWriter, r *http.Request) {
	if h.Reset == nil {
		h.Templates.Error(w, http.StatusNotFound, "Password reset by mail is off here.", "Ask an administrator to set a new password for you.")
		return
	}
	ctx := r.Context()
	token := r.URL.Query().Get("token")
	userID, err := h.Reset.Check(ctx, token)
	if status, msg, hint, ok := linkProblem(err); ok {
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.internal(w, r, "", err)
		return
	}
	f, err := h.loadFlow(ctx, r)
	if err == nil && (f.Stage != stagePassword || f.UserID != "" || f.StepUpSID != "") {
		err = ErrNoFlow // a sign-in past its password, or a step-up: start afresh
	}
	if errors.Is(err, ErrNoFlow) {
		f, _, err = h.begin(ctx, w, Start{})
	}
	if err != nil {
		h.internal(w, r, "", err)
		return
	}
	totp, passkey, err := h.factors(ctx, userID)
	if err != nil {
		h.internal(w, r, "", err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "reset", "Choose a new password", f.CSRF,
		resetData{Token: token, SecondFactor: totp || passkey})
}

// resetSubmit spends the link and moves the flow on, in one transaction:
// to the second factor when the account has one (the code, passkey or
// recovery code form of the sign-in), to setting one up where 2FA is
// required, else to the new password. The new password is chosen last
// in every case, as after a temporary password.
func (h *Handler) resetSubmit(w http.ResponseWriter, r *http.Request) {
	if h.Reset == nil {
		h.Templates.Error(w, http.StatusNotFound, "Password reset by mail is off here.", "Ask an administrator to set a new password for you.")
		return
	}
	f, ok := h.stepFlow(w, r, stagePassword, stepReset)
	if !ok {
		return
	}
	ctx := r.Context()
	var stage string
	err := db.Tx(ctx, h.Pool, func(ctx context.Context) error {
		userID, err := h.Reset.Redeem(ctx, r.PostFormValue("token"))
		if err != nil {
			return err
		}
		u, err := h.Users.ByID(ctx, userID)
		if err != nil {
			return err
		}
		totp, passkey, err := h.factors(ctx, userID)
		if err != nil {
			return err
		}
		// With no factor but the mail, the session will be a password
		// one, as it is after a password sign-in.
		next, amr, acr := stageNewPassword, []string{sessions.AMRPassword}, sessions.ACRPassword
		switch {
		case totp || passkey:
			next, amr, acr = stageTOTP, nil, ""
		case h.RequireMFA || u.RequireMFA:
			next, amr, acr = stageEnroll, nil, ""
		}
		stage = next
		_, err = db.Conn(ctx, h.Pool).Exec(ctx, `
			UPDATE login_flows SET stage = $2, user_id = $3, must_change_password = true, reset = true,
				pending_amr = $4, pending_acr = $5, remember = false, mfa_failures = 0
			WHERE id_hash = $1`, f.idHash, next, userID, amr, acr)
		return err
	})
	if status, msg, hint, ok := linkProblem(err); ok {
		h.observe(stepReset, outcomeRejected)
		h.Templates.Error(w, status, msg, hint)
		return
	} else if err != nil {
		h.internal(w, r, stepReset, err)
		return
	}
	h.observe(stepReset, outcomeNextStep)
	http.Redirect(w, r, stagePath(stage), http.StatusSeeOther)
}
