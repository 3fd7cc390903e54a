package login

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/device"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/web"
)

// The passkey steps. Each ceremony is two requests: the page's script
// fetches the options (JSON), the browser answers, and the script posts
// the answer in a plain form, whose response is a page like any other.
// Every challenge is bound to the flow that asked for it.
func (h *Handler) mountPasskeys(mux *http.ServeMux) {
	if h.Passkeys == nil {
		return
	}
	mux.HandleFunc("POST /login/passkey/options", h.signInOptions)
	mux.HandleFunc("POST /login/passkey", h.signInSubmit)
	mux.HandleFunc("POST /login/totp/passkey/options", h.secondFactorOptions)
	mux.HandleFunc("POST /login/totp/passkey", h.secondFactorSubmit)
	mux.HandleFunc("POST /login/enroll/passkey/options", h.enrollPasskeyOptions)
	mux.HandleFunc("POST /login/enroll/passkey", h.enrollPasskeySubmit)
}

// Steps of the passkey forms, as Observe is told them.
const (
	stepPasskey       = "passkey"        // passwordless
	stepPasskeyFactor = "passkey_factor" // the second factor
	stepPasskeyEnroll = "passkey_enroll" // set up during forced enrollment
)

// maxPasskeyForm bounds what a passkey form may send: a credential is a
// few KiB (passkey.MaxResponseBytes at most) plus the CSRF token.
const maxPasskeyForm = passkey.MaxResponseBytes + 4<<10

// passkeyFlow is flowOrError for the passkey requests, with the body
// bounded first.
func (h *Handler) passkeyFlow(w http.ResponseWriter, r *http.Request, stage string) (flow, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPasskeyForm)
	return h.flowOrError(w, r, stage)
}

// binding names the flow a challenge belongs to.
func binding(f flow) string { return "login-flow:" + hex.EncodeToString(f.idHash) }

// factors reports which second factors the user has, in one round trip.
func (h *Handler) factors(ctx context.Context, userID string) (totp, hasPasskey bool, err error) {
	err = db.Conn(ctx, h.Pool).QueryRow(ctx,
		`SELECT `+mfa.EnabledSQL("$1::uuid")+`, `+passkey.RegisteredSQL("$1::uuid"), userID).Scan(&totp, &hasPasskey)
	if err != nil {
		return false, false, fmt.Errorf("login: factors: %w", err)
	}
	return totp, hasPasskey, nil
}

// writeOptions answers an options request: the options, or {"error": …}
// with a sentence the script shows.
func (h *Handler) writeOptions(w http.ResponseWriter, opts passkey.Options, err error) {
	web.NoStore(w)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case err == nil:
		w.Write(opts)
		return
	case passkey.IsVerdict(err):
		p, _ := pages.Explain(err)
		w.WriteHeader(p.Status)
		json.NewEncoder(w).Encode(map[string]string{"error": p.Message})
	default:
		h.Logger.Error("login: passkey options", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"error": "Something went wrong on our side. Try again in a moment."})
	}
}

// signInOptions starts a passwordless sign-in (the autofill's quiet request
// with mediation=conditional, or the button's).
func (h *Handler) signInOptions(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stagePassword)
	if !ok {
		return
	}
	opts, err := h.Passkeys.BeginSignIn(r.Context(), binding(f), r.PostFormValue("mediation") == "conditional")
	h.writeOptions(w, opts, err)
}

// signInSubmit finishes a passwordless sign-in: a passkey with user
// verification is the whole sign-in (no password, no code after it), and
// a phishing-resistant one. In a step-up (the flow knows the person) it
// must be that person's passkey.
func (h *Handler) signInSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stagePassword)
	if !ok {
		return
	}
	ctx := r.Context()
	a, err := h.Passkeys.FinishAssertion(ctx, binding(f), []byte(r.PostFormValue("credential")), f.UserID)
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepPasskey, err)
			return
		}
		h.observe(stepPasskey, outcomeOf(stepPasskey, p))
		h.Templates.Render(w, p.Status, "login", "Sign in", f.CSRF,
			passwordData{Client: h.clientName(ctx, f), Error: p.Message, Passkey: true}, h.formTargets(ctx, f)...)
		return
	}
	// A passkey sign-in never takes the temporary-password detour: the
	// person did not use that password, which still expires unused. The
	// "keep me signed in" box comes with the form, as with a password.
	f.MustChangePassword = false
	f.Remember = r.PostFormValue("remember") != ""
	pctx, _ := db.Pipeline(ctx, h.Pool)
	h.complete(pctx, w, r, stepPasskey, f, a.UserID, append(a.Methods(), sessions.AMRMFA), sessions.ACRPhishingResistant)
}

// secondFactorOptions starts the second factor with one of the person's
// passkeys.
func (h *Handler) secondFactorOptions(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stageTOTP)
	if !ok {
		return
	}
	opts, err := h.Passkeys.BeginAssertion(r.Context(), f.UserID, binding(f))
	h.writeOptions(w, opts, err)
}

// secondFactorSubmit checks the passkey given after the password. A
// passkey that does not verify counts as a wrong second factor.
func (h *Handler) secondFactorSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stageTOTP)
	if !ok {
		return
	}
	ctx := r.Context()
	if f.MFAFailures >= MaxCodeFailures {
		h.killFlow(w, r, f)
		return
	}
	a, err := h.Passkeys.FinishAssertion(ctx, binding(f), []byte(r.PostFormValue("credential")), f.UserID)
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepPasskeyFactor, err)
			return
		}
		h.observe(stepPasskeyFactor, outcomeOf(stepPasskeyFactor, p))
		if countsAsFailure(err) {
			f.MFAFailures++
			if _, err := h.Pool.Exec(ctx,
				`UPDATE login_flows SET mfa_failures = mfa_failures + 1 WHERE id_hash = $1`, f.idHash); err != nil {
				h.internal(w, r, stepPasskeyFactor, err)
				return
			}
			if f.MFAFailures >= MaxCodeFailures {
				h.killFlow(w, r, f)
				return
			}
		}
		h.renderSecondFactor(w, r, f, p.Status, p.Message)
		return
	}
	amr := slices.Concat([]string{sessions.AMRPassword}, a.Methods(), []string{sessions.AMRMFA})
	pctx, _ := db.Pipeline(ctx, h.Pool)
	h.complete(pctx, w, r, stepPasskeyFactor, f, f.UserID, amr, sessions.ACRPhishingResistant)
}

// enrollPasskeyOptions starts making a passkey during forced enrollment,
// as the alternative to an authenticator app.
func (h *Handler) enrollPasskeyOptions(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stageEnroll)
	if !ok {
		return
	}
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, f.UserID)
	if err != nil {
		h.writeOptions(w, nil, err)
		return
	}
	opts, err := h.Passkeys.BeginRegistration(ctx, passkey.Person{ID: u.ID, Email: u.Email, Name: u.Name}, binding(f))
	h.writeOptions(w, opts, err)
}

// enrollPasskeySubmit stores the new passkey and completes the sign-in
// with two factors: the password, and the passkey the authenticator just
// made after verifying the person. It is not phishing-resistant (whoever
// relayed the password could have made it), so the session is two-factor.
func (h *Handler) enrollPasskeySubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.passkeyFlow(w, r, stageEnroll)
	if !ok {
		return
	}
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, f.UserID)
	if err != nil {
		h.internal(w, r, stepPasskeyEnroll, err)
		return
	}
	pk, err := h.Passkeys.FinishRegistration(ctx, passkey.Person{ID: u.ID, Email: u.Email, Name: u.Name}, binding(f),
		[]byte(r.PostFormValue("credential")), "", device.Name(r.UserAgent()))
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepPasskeyEnroll, err)
			return
		}
		h.observe(stepPasskeyEnroll, outcomeOf(stepPasskeyEnroll, p))
		e, ok := h.enrollment(w, r, f)
		if !ok {
			return
		}
		h.Templates.Render(w, p.Status, "enroll", "Set up two-factor authentication", f.CSRF,
			enrollData{Secret: e.Secret, URI: e.URI, Error: p.Message, QRURL: "/login/enroll/qr.png",
				Action: "/login/enroll", Passkey: true}, h.formTargets(ctx, f)...)
		return
	}
	amr := slices.Concat([]string{sessions.AMRPassword}, passkey.Assertion{Synced: pk.Synced(), UserVerified: true}.Methods(),
		[]string{sessions.AMRMFA})
	var next, sid string
	pctx, pu := db.Pipeline(ctx, h.Pool)
	if f.MustChangePassword {
		h.queueToNewPassword(pctx, f, f.UserID, amr, sessions.ACRMFA)
		if err := pu.CommitAsync(pctx); err != nil {
			h.internal(w, r, stepPasskeyEnroll, err)
			return
		}
		next = stagePath(stageNewPassword)
	} else if next, sid, ok = h.establish(pctx, w, r, stepPasskeyEnroll, f, f.UserID, amr, sessions.ACRMFA); !ok {
		return
	}
	if err := h.Sessions.FactorsChanged(ctx, f.UserID, sid, audit.ActionAddPasskey); err != nil {
		h.internal(w, r, stepPasskeyEnroll, err)
		return
	}
	h.observe(stepPasskeyEnroll, outcomeSignedIn)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// countsAsFailure: an answer that verified as someone's, or failed to
// verify, is a wrong second factor; one that expired or was sent twice is
// not (nothing was guessed).
func countsAsFailure(err error) bool {
	return errors.Is(err, passkey.ErrInvalid) || errors.Is(err, passkey.ErrWrongUser) ||
		errors.Is(err, passkey.ErrCounter) || errors.Is(err, passkey.ErrUnknownCredential)
}
