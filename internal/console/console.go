// Package console owns the administrators' HTML console at /admin: finding
// users, seeing a user's sessions, apps and every back-channel logout
// notification's state, acting on the account (revoke all sessions, reset
// 2FA, set a password, disable, enable, delete, the administrator role,
// retry a notification), marking apps as admin service accounts
// (/admin/clients), and the Shared Signals streams (/admin/signals: retry
// now, pause, enable).
//
// It opens only to an enabled administrator whose SSO session was
// established with two factors: without a session the browser is sent to
// sign in; with a password-only one, to give a second factor (or enroll
// one) through login's step-up. Destructive actions also need that second
// factor to be recent (FreshFactor), or a current code with the form.
// Every action is a form post carrying the session's CSRF token and goes
// through admin.Service, the same methods the admin API and the CLI use,
// with the administrator as actor; it ends in a redirect back
// (post/redirect/get) with a notice.
package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// Handler serves /admin (the API under /admin/api is package admin's).
type Handler struct {
	Admin    *admin.Service
	Sessions *sessions.Manager
	Login    *login.Handler // starts a sign-in, or a step-up to two factors
	// RequirePasskey opens the console only to sessions signed in with a
	// passkey (acr urn:idp:acr:phr; IDP_ADMIN_REQUIRE_PASSKEY): any other
	// steps up to one.
	RequirePasskey bool
	// Codes verifies the code that confirms a destructive action (mfa.TOTP).
	Codes     Codes
	Templates *web.Templates
	Errors    *pages.Errors
	Logger    *slog.Logger
	Now       func() time.Time
}

// Codes checks a second-factor code of a user (mfa.TOTP): a code from
// their app, or a recovery code. Its errors are mfa's verdicts.
type Codes interface {
	Verify(ctx context.Context, userID, code string) (method string, err error)
}

// signedIn is the administrator using the console, and their session.
type signedIn struct {
	users.User
	session sessions.Session
}

// Mount registers the console routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin", h.home)
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /admin/users/{id}", h.user)
	mux.HandleFunc("POST /admin/users", h.createUser)
	mux.HandleFunc("POST /admin/users/{id}/revoke-sessions", h.revokeSessions)
	mux.HandleFunc("POST /admin/users/{id}/reset-mfa", h.resetMFA)
	mux.HandleFunc("POST /admin/users/{id}/passkeys/{pid}/remove", h.removePasskey)
	mux.HandleFunc("POST /admin/users/{id}/password", h.setPassword)
	mux.HandleFunc("POST /admin/users/{id}/disable", h.disable)
	mux.HandleFunc("POST /admin/users/{id}/enable", h.enable)
	mux.HandleFunc("POST /admin/users/{id}/delete", h.deleteUser)
	mux.HandleFunc("POST /admin/users/{id}/role", h.setRole)
	mux.HandleFunc("GET /admin/clients", h.clients)
	mux.HandleFunc("POST /admin/clients/{id}/service-account", h.setServiceAccount)
	mux.HandleFunc("POST /admin/clients/{id}/require-par", h.setRequirePAR)
	mux.HandleFunc("POST /admin/clients/{id}/dpop", h.setDPoP)
	mux.HandleFunc("POST /admin/clients/{id}/access-token-format", h.setAccessTokenFormat)
	mux.HandleFunc("POST /admin/users/{id}/notifications/{nid}/retry", h.retry)
	mux.HandleFunc("GET /admin/signals", h.signals)
	mux.HandleFunc("POST /admin/signals/{id}/retry", h.retryStream)
	mux.HandleFunc("POST /admin/signals/{id}/status", h.setStreamStatus)
	mux.HandleFunc("GET /admin/confirm", h.confirmAgain)
	// Anything else under /admin (but /admin/api/, the API's) is an HTML
	// 404 rather than the mux's plain text.
	mux.HandleFunc("/admin/", h.notFound)
}

// administrator returns the signed-in administrator, or answers the
// request itself and reports false: a visitor without a session goes to
// sign in, someone who is not an administrator gets a 403 page, and an
// administrator whose session has one factor goes to give a second. A form
// post that lands there is dropped: its CSRF token is of a session that is
// about to change.
func (h *Handler) administrator(w http.ResponseWriter, r *http.Request) (signedIn, bool) {
	ctx := r.Context()
	s, u, err := h.Sessions.CurrentUser(ctx, r)
	if errors.Is(err, sessions.ErrNoSession) {
		h.begin(w, r, login.Start{})
		return signedIn{}, false
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return signedIn{}, false
	}
	// Checked before the second factor: someone who may not use the console
	// is not asked for a code first.
	if !u.IsAdmin {
		h.Templates.Error(w, http.StatusForbidden, "This page is for administrators.",
			"You are signed in as "+u.Email+", which is not an administrator account. "+
				"Your own account page is at /account.")
		return signedIn{}, false
	}
	if h.RequirePasskey && !s.PhishingResistant() {
		has, err := h.Admin.HasPasskey(ctx, u.ID)
		if err != nil {
			h.Errors.Internal(w, r, err)
			return signedIn{}, false
		}
		if !has {
			h.Templates.Error(w, http.StatusForbidden, "The admin console asks administrators to sign in with a passkey, and your account has none yet.",
				"Add a passkey on your account page (/account), then open the console again.")
			return signedIn{}, false
		}
		h.begin(w, r, login.Start{StepUp: &s, Want: sessions.ACRPhishingResistant})
		return signedIn{}, false
	}
	if !s.MultiFactor() {
		h.begin(w, r, login.Start{StepUp: &s})
		return signedIn{}, false
	}
	return signedIn{User: u, session: s}, true
}

// administratorPost is administrator plus the CSRF check every action
// needs.
func (h *Handler) administratorPost(w http.ResponseWriter, r *http.Request) (signedIn, bool) {
	adm, ok := h.administrator(w, r)
	if !ok {
		return adm, false
	}
	if !h.Sessions.CheckCSRF(r) {
		h.Errors.StaleForm(w, "Open the console again and retry from there.")
		return adm, false
	}
	return adm, true
}

// begin starts a sign-in (or a step-up) and sends the browser to it.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, s login.Start) {
	// Come back to the console page the admin asked for.
	s.ReturnTo = "/admin"
	if r.Method == http.MethodGet {
		s.ReturnTo = r.URL.RequestURI()
	}
	next, err := h.Login.Begin(r.Context(), w, s)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	web.NoStore(w)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// actor is how the audit log names the administrator.
func actor(adm signedIn) string { return audit.Admin(adm.ID) }

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.administrator(w, r); !ok {
		return
	}
	h.Templates.Error(w, http.StatusNotFound, "There is no such page in the console.", "Start again from /admin.")
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}
