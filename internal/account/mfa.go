package account

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// enrollData is the account-enroll page.
type enrollData struct {
	Secret, Error string
	// URI is typed as a trusted URL because html/template replaces any
	// scheme but http(s) and mailto with "#ZgotmplZ". It is trusted: the
	// scheme is always otpauth, and pquerna/otp escapes the account name.
	URI template.URL
}

// recoveryData is the shared recovery page (its fields match login's).
type recoveryData struct {
	RecoveryCodes []string
	Continue      string
}

func (h *Handler) enrollPage(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedIn(w, r)
	if !ok {
		return
	}
	h.renderEnroll(w, r, s, http.StatusOK, "")
}

// renderEnroll shows the pending enrollment, starting one if there is none,
// so a reload shows the secret the person may already have scanned. With 2FA
// already on it goes back to /account: an active secret is never shown.
func (h *Handler) renderEnroll(w http.ResponseWriter, r *http.Request, s sessions.Session, status int, msg string) {
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	e, err := h.TOTP.Pending(ctx, u.ID, mfa.SessionOwner(s.ID), u.Email)
	if errors.Is(err, mfa.ErrNotEnrolled) {
		e, err = h.TOTP.Begin(ctx, u.ID, mfa.SessionOwner(s.ID), u.Email)
	}
	if errors.Is(err, mfa.ErrAlreadyEnrolled) {
		http.Redirect(w, r, "/account?notice=mfa-on", http.StatusSeeOther)
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, status, "account-enroll", "Set up two-factor authentication", h.Sessions.CSRFToken(r),
		enrollData{Secret: e.Secret, URI: template.URL(e.URI), Error: msg})
}

// enrollQR serves the pending enrollment's QR code. It never starts an
// enrollment (the page does), and an image request gets a status, not a
// redirect into the sign-in.
func (h *Handler) enrollQR(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	web.NoStore(w)
	s, err := h.Sessions.Current(ctx, r)
	if errors.Is(err, sessions.ErrNoSession) {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	e, err := h.TOTP.Pending(ctx, u.ID, mfa.SessionOwner(s.ID), u.Email)
	if errors.Is(err, mfa.ErrNotEnrolled) || errors.Is(err, mfa.ErrAlreadyEnrolled) {
		http.Error(w, "no two-factor set-up in progress", http.StatusNotFound)
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	png, err := e.QRPNG()
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	pages.QR(w, png)
}

// enrollSubmit turns 2FA on. It asks for the password as well as the first
// code: otherwise whoever holds a stolen session cookie could enroll their
// own phone, end the owner's other sessions and lock the owner out of their
// next sign-in.
func (h *Handler) enrollSubmit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	password, code := r.PostFormValue("password"), r.PostFormValue("code")
	if password == "" || code == "" {
		h.renderEnroll(w, r, s, http.StatusBadRequest, "Enter your password and the 6-digit code your authenticator app shows.")
		return
	}
	if p, ok := h.checkPassword(w, r, s, password); !ok {
		if p.Status != 0 {
			h.renderEnroll(w, r, s, p.Status, p.Message)
		}
		return
	}
	var codes []string
	err := h.changeFactors(ctx, s, audit.ActionEnableMFA, func(ctx context.Context) (err error) {
		codes, err = h.TOTP.Confirm(ctx, s.UserID, mfa.SessionOwner(s.ID), code)
		return err
	})
	switch {
	case errors.Is(err, mfa.ErrAlreadyEnrolled):
		http.Redirect(w, r, "/account?notice=mfa-on", http.StatusSeeOther)
		return
	case errors.Is(err, mfa.ErrNotEnrolled):
		// The pending secret went away (turned on and off in another
		// window, say): renderEnroll starts a new one.
		h.renderEnroll(w, r, s, http.StatusConflict,
			"The set-up was started again, so the key changed. Scan the new code below and enter the code it shows.")
		return
	case err != nil:
		p, known := codeProblem(w, err)
		if !known {
			h.Errors.Internal(w, r, err)
			return
		}
		h.renderEnroll(w, r, s, p.Status, p.Message)
		return
	}
	// The session now has two factors: record that, and rotate its cookie
	// value so one seen before the change is worthless.
	amr := []string{sessions.AMRPassword, sessions.AMROTP, sessions.AMRMFA}
	if err := h.Sessions.StepUp(ctx, w, s.ID, s.UserID, amr, sessions.ACRMFA); err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, http.StatusOK, "recovery", "Save your recovery codes", "",
		recoveryData{RecoveryCodes: codes, Continue: "/account"})
}

// regenerateSubmit replaces the recovery codes. It asks for a current code
// (from the app, or a recovery code), not the password: the codes stand in
// for the second factor, so proof of that factor is what guards them.
func (h *Handler) regenerateSubmit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	code := r.PostFormValue("code")
	if code == "" {
		h.renderOverview(w, r, s, http.StatusBadRequest, overviewData{
			RecoveryError: "Enter the 6-digit code from your authenticator app (or a recovery code) to make new recovery codes."})
		return
	}
	var codes []string
	err := h.changeFactors(ctx, s, audit.ActionRegenerateRecoveryCodes, func(ctx context.Context) error {
		if _, err := h.TOTP.Verify(ctx, s.UserID, code); err != nil {
			return err
		}
		var err error
		codes, err = h.TOTP.RegenerateRecoveryCodes(ctx, s.UserID)
		return err
	})
	switch {
	case errors.Is(err, mfa.ErrNotEnrolled):
		h.renderOverview(w, r, s, http.StatusConflict, overviewData{
			RecoveryError: "Two-factor authentication is off, so there are no recovery codes to replace. Set it up first."})
		return
	case err != nil:
		p, known := codeProblem(w, err)
		if !known {
			h.Errors.Internal(w, r, err)
			return
		}
		h.renderOverview(w, r, s, p.Status, overviewData{RecoveryError: p.Message + " Your recovery codes were not changed."})
		return
	}
	h.Templates.Render(w, http.StatusOK, "recovery", "Your new recovery codes", "",
		recoveryData{RecoveryCodes: codes, Continue: "/account"})
}

// disableSubmit turns 2FA off. It needs both the password and a current
// code (or a recovery code): a stolen session alone, or a stolen phone
// alone, cannot remove the second factor.
func (h *Handler) disableSubmit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	fail := func(status int, msg string) {
		h.renderOverview(w, r, s, status, overviewData{DisableError: msg})
	}
	// Refused before anything is checked, so no code is spent on it.
	// Passkeys are a second factor too: with one the app's codes may go.
	hasPasskey := false
	if h.Passkeys != nil {
		if hasPasskey, err = h.Passkeys.Registered(ctx, u.ID); err != nil {
			h.Errors.Internal(w, r, err)
			return
		}
	}
	if (h.RequireMFA || u.RequireMFA) && !hasPasskey {
		fail(http.StatusForbidden, "Two-factor authentication is required for your account, so it cannot be turned off. "+
			"If you lost your phone, sign in with a recovery code and make new ones, or ask an administrator to reset it.")
		return
	}
	password, code := r.PostFormValue("password"), r.PostFormValue("code")
	if password == "" || code == "" {
		fail(http.StatusBadRequest, "Enter your password and a current code (or a recovery code) to turn two-factor authentication off.")
		return
	}
	if p, ok := h.checkPassword(w, r, s, password); !ok {
		if p.Status != 0 {
			fail(p.Status, p.Message+" Two-factor authentication is still on.")
		}
		return
	}
	err = h.changeFactors(ctx, s, audit.ActionDisableMFA, func(ctx context.Context) error {
		if _, err := h.TOTP.Verify(ctx, s.UserID, code); err != nil {
			return err
		}
		if err := h.TOTP.Disable(ctx, s.UserID); err != nil {
			return err
		}
		// This session lives on with one factor: its next tokens say so,
		// and none it issued before still claims two.
		return h.Sessions.DropSecondFactor(ctx, s.UserID, s.ID)
	})
	switch {
	case errors.Is(err, mfa.ErrNotEnrolled):
		http.Redirect(w, r, "/account?notice=mfa-none", http.StatusSeeOther)
	case err != nil:
		p, known := codeProblem(w, err)
		if !known {
			h.Errors.Internal(w, r, err)
			return
		}
		fail(p.Status, p.Message+" Two-factor authentication is still on.")
	default:
		http.Redirect(w, r, "/account?notice=mfa-off", http.StatusSeeOther)
	}
}

// changeFactors runs change and, in the same transaction, ends the user's
// other sessions and all their tokens, so no session that existed before
// the change outlives it, and records action in the audit log (a failure
// leaves all three undone). A verdict of mfa (wrong code, throttled…) is
// returned as is and still committed: the failure count it recorded must
// stick.
func (h *Handler) changeFactors(ctx context.Context, s sessions.Session, action string, change func(ctx context.Context) error) error {
	var verdict error
	err := db.Tx(ctx, h.Pool, func(ctx context.Context) error {
		if err := change(ctx); err != nil {
			if isVerdict(err) {
				verdict = err
				return nil
			}
			return err
		}
		return h.Sessions.FactorsChanged(ctx, s.UserID, s.ID, action)
	})
	if err != nil {
		return fmt.Errorf("account: change factors: %w", err)
	}
	return verdict
}

func isVerdict(err error) bool {
	var te *mfa.ThrottledError
	return errors.Is(err, mfa.ErrInvalidCode) || errors.Is(err, mfa.ErrReplayed) || errors.Is(err, mfa.ErrMalformedCode) ||
		errors.Is(err, mfa.ErrNotEnrolled) || errors.Is(err, mfa.ErrAlreadyEnrolled) || errors.As(err, &te)
}

// checkPassword re-confirms the password before a change of factors. When
// it is not right it returns the problem to show; ok false with a zero
// problem means an internal error was already answered.
func (h *Handler) checkPassword(w http.ResponseWriter, r *http.Request, s sessions.Session, password string) (pages.Problem, bool) {
	err := h.Users.VerifyPassword(r.Context(), s.UserID, password)
	if err == nil {
		return pages.Problem{}, true
	}
	p, known := pages.Explain(err)
	if !known {
		h.Errors.Internal(w, r, err)
		return pages.Problem{}, false
	}
	if errors.Is(err, users.ErrInvalidCredentials) {
		p.Message = "That password is not right. Enter the password you sign in with."
	}
	pages.SetRetryAfter(w, p)
	return p, false
}

// checkPasswordQuiet is checkPassword for a request that answers JSON:
// it never writes the body; an error of ours is logged and comes back as
// a status 500 with a message.
func (h *Handler) checkPasswordQuiet(ctx context.Context, w http.ResponseWriter, s sessions.Session, password string) (pages.Problem, bool) {
	err := h.Users.VerifyPassword(ctx, s.UserID, password)
	if err == nil {
		return pages.Problem{}, true
	}
	p, known := pages.Explain(err)
	if !known {
		h.Logger.ErrorContext(ctx, "account: check password", "err", err)
		return pages.Problem{Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Try again in a moment."}, false
	}
	if errors.Is(err, users.ErrInvalidCredentials) {
		p.Message = "That password is not right. Enter the password you sign in with."
	}
	pages.SetRetryAfter(w, p)
	return p, false
}

// codeProblem is what to show for a code that was not accepted; ok false
// for an error that is ours.
func codeProblem(w http.ResponseWriter, err error) (pages.Problem, bool) {
	p, ok := pages.Explain(err)
	pages.SetRetryAfter(w, p)
	return p, ok
}
