package login

import (
	"errors"
	"net/http"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
)

type totpData struct {
	Client, Error string
	Remaining     int // wrong codes left in this sign-in
	// Passkey offers the person's passkey (first); Codes the code form.
	Passkey, Codes bool
	// PasskeyOnly: the app asked for a passkey, so codes do not do.
	PasskeyOnly bool
}

func (h *Handler) totpPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageTOTP)
	if !ok {
		return
	}
	h.renderSecondFactor(w, r, f, http.StatusOK, "")
}

// renderSecondFactor shows the second-factor page: the passkey first when
// the person has one, then the code form when codes will do.
func (h *Handler) renderSecondFactor(w http.ResponseWriter, r *http.Request, f flow, status int, msg string) {
	ctx := r.Context()
	totp, passkey, err := h.factors(ctx, f.UserID)
	if err != nil {
		h.internal(w, r, "", err)
		return
	}
	only := f.WantACR == sessions.ACRPhishingResistant
	h.Templates.Render(w, status, "totp", "Two-factor authentication", f.CSRF, totpData{
		Client: h.clientName(ctx, f), Error: msg, Remaining: MaxCodeFailures - f.MFAFailures,
		Passkey: passkey && h.Passkeys != nil, Codes: totp && !only, PasskeyOnly: only}, h.formTargets(ctx, f)...)
}

// totpSubmit checks the second factor. A right code costs five round trips:
// the flow; two for mfa.TOTP.Verify (the credential locked with its
// throttle state, then the spent step with COMMIT); the new session; the
// flow's DELETE.
func (h *Handler) totpSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageTOTP)
	if !ok {
		return
	}
	ctx := r.Context()
	if f.MFAFailures >= MaxCodeFailures {
		h.killFlow(w, r, f)
		return
	}
	if f.WantACR == sessions.ACRPhishingResistant {
		// Checked before the code: none is spent on a step-up it cannot make.
		h.renderSecondFactor(w, r, f, http.StatusForbidden,
			"The application asks you to confirm with a passkey: a code is not enough here. Use your passkey below.")
		return
	}
	method, err := h.TOTP.Verify(ctx, f.UserID, r.PostFormValue("code"))
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepTOTP, err)
			return
		}
		var throttled *mfa.ThrottledError
		if !errors.Is(err, mfa.ErrMalformedCode) && !errors.As(err, &throttled) {
			// A malformed entry is a typo and a throttled one was never
			// checked: neither uses up one of the attempt's tries.
			f.MFAFailures++
			if _, err := h.Pool.Exec(ctx,
				`UPDATE login_flows SET mfa_failures = mfa_failures + 1 WHERE id_hash = $1`, f.idHash); err != nil {
				h.internal(w, r, stepTOTP, err)
				return
			}
			if f.MFAFailures >= MaxCodeFailures {
				h.killFlow(w, r, f)
				return
			}
		}
		h.observe(stepTOTP, outcomeOf(stepTOTP, p))
		pages.SetRetryAfter(w, p)
		h.renderSecondFactor(w, r, f, p.Status, p.Message)
		return
	}
	amr := []string{sessions.AMRPassword, sessions.AMROTP, sessions.AMRMFA}
	if method == mfa.MethodRecovery {
		amr = []string{sessions.AMRPassword, sessions.AMRMFA}
	}
	pctx, _ := db.Pipeline(ctx, h.Pool)
	h.complete(pctx, w, r, stepTOTP, f, f.UserID, amr, sessions.ACRMFA)
}

// killFlow ends a sign-in that saw too many wrong codes.
func (h *Handler) killFlow(w http.ResponseWriter, r *http.Request, f flow) {
	ctx, u := db.Pipeline(r.Context(), h.Pool)
	h.queueFinish(ctx, w, f)
	if err := u.CommitAsync(ctx); err != nil {
		h.internal(w, r, stepTOTP, err)
		return
	}
	h.observe(stepTOTP, outcomeRejected)
	h.Templates.Error(w, http.StatusForbidden, "Too many wrong codes for this sign-in.",
		"Go back to the application and sign in again. If you lost your phone, use one of your recovery codes.")
}

type enrollData struct {
	Secret, URI, Error string
	QRURL, Action      string
	RecoveryCodes      []string
	Continue           string
	// Passkey offers a passkey instead of the app (forced enrollment).
	Passkey bool
}

func (h *Handler) enrollPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageEnroll)
	if !ok {
		return
	}
	e, ok := h.enrollment(w, r, f)
	if !ok {
		return
	}
	h.Templates.Render(w, http.StatusOK, "enroll", "Set up two-factor authentication", f.CSRF,
		enrollData{Secret: e.Secret, URI: e.URI, QRURL: "/login/enroll/qr.png", Action: "/login/enroll", Passkey: h.Passkeys != nil},
		h.formTargets(r.Context(), f)...)
}

// enrollment shows the pending enrollment, starting one if needed, so a
// reload shows the same secret the person may already have scanned.
func (h *Handler) enrollment(w http.ResponseWriter, r *http.Request, f flow) (mfa.Enrollment, bool) {
	userID := f.UserID
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, userID)
	if err != nil {
		h.internal(w, r, "", err)
		return mfa.Enrollment{}, false
	}
	e, err := h.TOTP.Pending(ctx, userID, f.enrollmentOwner(), u.Email)
	if errors.Is(err, mfa.ErrNotEnrolled) {
		e, err = h.TOTP.Begin(ctx, userID, f.enrollmentOwner(), u.Email)
	}
	if err != nil {
		h.internal(w, r, "", err)
		return mfa.Enrollment{}, false
	}
	return e, true
}

func (h *Handler) enrollQR(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageEnroll)
	if !ok {
		return
	}
	e, ok := h.enrollment(w, r, f)
	if !ok {
		return
	}
	png, err := e.QRPNG()
	if err != nil {
		h.internal(w, r, "", err)
		return
	}
	pages.QR(w, png)
}

func (h *Handler) enrollSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageEnroll)
	if !ok {
		return
	}
	ctx := r.Context()
	codes, err := h.TOTP.Confirm(ctx, f.UserID, f.enrollmentOwner(), r.PostFormValue("code"))
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepEnroll, err)
			return
		}
		e, ok := h.enrollment(w, r, f)
		if !ok {
			return
		}
		h.observe(stepEnroll, outcomeOf(stepEnroll, p))
		pages.SetRetryAfter(w, p)
		h.Templates.Render(w, p.Status, "enroll", "Set up two-factor authentication", f.CSRF,
			enrollData{Secret: e.Secret, URI: e.URI, Error: p.Message, QRURL: "/login/enroll/qr.png", Action: "/login/enroll",
				Passkey: h.Passkeys != nil}, h.formTargets(ctx, f)...)
		return
	}
	amr := []string{sessions.AMRPassword, sessions.AMROTP, sessions.AMRMFA}
	var next, sid string
	if f.MustChangePassword {
		// The password was temporary: the session waits for the person's
		// own, and the codes page continues to that form.
		pctx, u := db.Pipeline(ctx, h.Pool)
		h.queueToNewPassword(pctx, f, f.UserID, amr, sessions.ACRMFA)
		if err := u.CommitAsync(pctx); err != nil {
			h.internal(w, r, stepEnroll, err)
			return
		}
		next = stagePath(stageNewPassword)
	} else {
		pctx, _ := db.Pipeline(ctx, h.Pool)
		var ok bool
		if next, sid, ok = h.establish(pctx, w, r, stepEnroll, f, f.UserID, amr, sessions.ACRMFA); !ok {
			return
		}
	}
	// A change of factors ends the person's other sessions: whoever held
	// one signed in under the old, weaker rules.
	if err := h.Sessions.FactorsChanged(ctx, f.UserID, sid, audit.ActionEnableMFA); err != nil {
		h.internal(w, r, stepEnroll, err)
		return
	}
	h.observe(stepEnroll, outcomeSignedIn)
	// Shown once: the person writes them down, then continues to the app.
	h.Templates.Render(w, http.StatusOK, "recovery", "Save your recovery codes", "",
		enrollData{RecoveryCodes: codes, Continue: next})
}
