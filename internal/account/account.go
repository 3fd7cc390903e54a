// Package account owns the signed-in person's own pages at /account: their
// sessions (and ending them), their password, and their second factor
// (enrolling, recovery codes, disabling).
//
// Only a live SSO session (sessions.Manager.Current) opens these pages; a
// sign-in in progress does not. Every form posts with the session's CSRF
// token. Sessions end only through sessions.Manager.Revoke, and every change
// of factors (the password included) ends the person's other sessions in the
// same transaction, so a
// session that may have been stolen before the change does not outlive it.
package account

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/internal/verify"
	"github.com/idp/idp/web"
)

// Handler serves /account.
type Handler struct {
	// Pool runs a change of factors and the end of the other sessions in
	// one transaction.
	Pool     *pgxpool.Pool
	Sessions *sessions.Manager
	Users    *users.Store
	TOTP     *mfa.TOTP
	// Passkeys, when set, lists the person's passkeys and lets them add,
	// rename and remove them.
	Passkeys  *passkey.Service
	Login     *login.Handler // starts a sign-in for visitors without a session
	Templates *web.Templates
	Errors    *pages.Errors
	Logger    *slog.Logger
	Now       func() time.Time
	// RequireMFA is the global policy: when set nobody may turn 2FA off.
	RequireMFA bool
	// ClientName returns an app's display name ("" when unknown); nil shows
	// client ids only.
	ClientName func(ctx context.Context, clientID string) string
	// Email changes the account's address through a mailed link; nil
	// when mail is off.
	Email *verify.Service
}

// Mount registers the account routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /account", h.overview)
	mux.HandleFunc("POST /account/sessions/{sid}/sign-out", h.signOutSession)
	mux.HandleFunc("POST /account/sign-out-everywhere", h.signOutEverywhere)
	mux.HandleFunc("GET /account/mfa/enroll", h.enrollPage)
	mux.HandleFunc("GET /account/mfa/qr.png", h.enrollQR)
	mux.HandleFunc("POST /account/mfa/enroll", h.enrollSubmit)
	mux.HandleFunc("POST /account/mfa/recovery-codes", h.regenerateSubmit)
	mux.HandleFunc("POST /account/mfa/disable", h.disableSubmit)
	mux.HandleFunc("POST /account/password", h.passwordSubmit)
	h.mountPasskeys(mux)
	h.mountEmail(mux)
}

// signedIn returns the live session of r. Without one it sends the browser
// to sign in (landing back on /account afterwards) and reports false; for a
// form post the action is dropped, as its CSRF token could not be valid.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request) (sessions.Session, bool) {
	ctx := r.Context()
	s, err := h.Sessions.Current(ctx, r)
	if errors.Is(err, sessions.ErrNoSession) {
		next, err := h.Login.Begin(ctx, w, login.Start{})
		if err != nil {
			h.Errors.Internal(w, r, err)
			return sessions.Session{}, false
		}
		web.NoStore(w)
		http.Redirect(w, r, next, http.StatusSeeOther)
		return sessions.Session{}, false
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return sessions.Session{}, false
	}
	return s, true
}

// signedInPost is signedIn plus the CSRF check every form post needs.
func (h *Handler) signedInPost(w http.ResponseWriter, r *http.Request) (sessions.Session, bool) {
	s, ok := h.signedIn(w, r)
	if !ok {
		return s, false
	}
	if !h.Sessions.CheckCSRF(r) {
		h.Errors.StaleForm(w, "Open your account page again and retry from there.")
		return s, false
	}
	return s, true
}

// actor is how the audit log names the person acting on their own account.
func actor(s sessions.Session) string { return audit.User(s.UserID) }

// notices are the messages a redirect back to /account may show, by key,
// so no text from the URL reaches the page.
var notices = map[string]string{
	"session-ended": "That session is signed out. The apps it was used with have been told.",
	"mfa-on":        "Two-factor authentication is already on.",
	"mfa-off":       "Two-factor authentication is off. Your other sessions were signed out.",
	"mfa-none":      "Two-factor authentication was already off.",
	"password-changed": "Your password is changed. Your other sessions were signed out, " +
		"and the apps they were used with have been told.",
	"passkey-added": "Your passkey is added: you can sign in with it, without your password. " +
		"Your other sessions were signed out, and the apps they were used with have been told.",
	"passkey-removed": "The passkey is removed and no longer signs you in. Your other sessions were signed out, " +
		"and the apps they were used with have been told.",
	"passkey-renamed": "The passkey is renamed.",
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedIn(w, r)
	if !ok {
		return
	}
	h.renderOverview(w, r, s, http.StatusOK, overviewData{Notice: notices[r.URL.Query().Get("notice")]})
}

// overviewData is the account page. The error fields put a message next to
// the form it is about.
type overviewData struct {
	User          users.User
	MFA           mfaStatus
	Sessions      []sessionView
	Notice        string
	Error         string // about the sessions or the page as a whole
	RecoveryError string // about the recovery-codes form
	DisableError  string // about the turn-off form
	PasswordError string // about the change-password form
	PasskeyError  string // about the passkeys section
	Activity      []activityView
	// PasskeysOn: this server offers passkeys; Passkeys are the person's.
	PasskeysOn bool
	Passkeys   []passkeyView
}

type mfaStatus struct {
	Enabled   bool
	Remaining int // unused recovery codes
	Total     int
	Low       bool // few enough left that the person should make new ones
	Required  bool // policy forbids turning it off
	// Passkey: the person has a passkey, a second factor of its own, so
	// the app's codes may be turned off even when 2FA is required.
	Passkey bool
}

// renderOverview renders /account for s with status, filling in the user,
// their second factor and their sessions around the given messages.
func (h *Handler) renderOverview(w http.ResponseWriter, r *http.Request, s sessions.Session, status int, d overviewData) {
	ctx := r.Context()
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	d.User = u
	d.MFA.Enabled, err = h.TOTP.Enabled(ctx, u.ID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	if d.MFA.Enabled {
		if d.MFA.Remaining, err = h.TOTP.RemainingRecoveryCodes(ctx, u.ID); err != nil {
			h.Errors.Internal(w, r, err)
			return
		}
	}
	d.MFA.Total = mfa.RecoveryCodeCount
	d.MFA.Low = d.MFA.Enabled && d.MFA.Remaining <= 3
	d.MFA.Required = h.RequireMFA || u.RequireMFA
	d.PasskeysOn = h.Passkeys != nil
	if d.Passkeys, err = h.passkeyViews(ctx, u.ID); err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	d.MFA.Passkey = len(d.Passkeys) > 0
	list, err := h.Sessions.ListByUser(ctx, u.ID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	d.Sessions = h.sessionViews(ctx, list, s.ID)
	if d.Activity, err = h.activity(ctx, u.ID); err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.Templates.Render(w, status, "account", "Your account", h.Sessions.CSRFToken(r), d)
}
