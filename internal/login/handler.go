package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// MaxCodeFailures is how many wrong second factors one sign-in may see
// before it is dead and the person must start again.
const MaxCodeFailures = 5

// Handler serves /login and its steps.
type Handler struct {
	Pool     *pgxpool.Pool
	Sessions *sessions.Manager
	Users    *users.Store
	TOTP     *mfa.TOTP
	// Passkeys, when set, offers passkeys: passwordless sign-in, the
	// second factor, and set-up during forced enrollment. Nil on an
	// issuer whose host is an IP address (passkey.ErrUnavailable).
	Passkeys  *passkey.Service
	Templates *web.Templates
	Logger    *slog.Logger
	Now       func() time.Time
	FlowTTL   time.Duration
	// RequireMFA makes every user enroll a second factor before reaching any app.
	RequireMFA bool
	// ClientName returns an app's display name for "continue to …".
	ClientName func(ctx context.Context, clientID string) string
}

// Mount registers the sign-in routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", h.passwordPage)
	mux.HandleFunc("POST /login", h.passwordSubmit)
	mux.HandleFunc("GET /login/totp", h.totpPage)
	mux.HandleFunc("POST /login/totp", h.totpSubmit)
	mux.HandleFunc("GET /login/enroll", h.enrollPage)
	mux.HandleFunc("GET /login/enroll/qr.png", h.enrollQR)
	mux.HandleFunc("POST /login/enroll", h.enrollSubmit)
	mux.HandleFunc("GET /login/new-password", h.newPasswordPage)
	mux.HandleFunc("POST /login/new-password", h.newPasswordSubmit)
	h.mountPasskeys(mux)
}

type passwordData struct {
	Client, Email, Error string
	// StepUp: the person is signed in already and confirms their password
	// before setting up a second factor; the email is theirs and fixed.
	StepUp bool
	// Remember is the "keep me signed in" box as the person left it.
	Remember bool
	// Passkey offers the passwordless sign-in.
	Passkey bool
}

// flowOrError loads the flow, rendering the expired-flow page when there is none.
func (h *Handler) flowOrError(w http.ResponseWriter, r *http.Request, stage string) (flow, bool) {
	f, err := h.loadFlow(r.Context(), r)
	if errors.Is(err, ErrNoFlow) {
		h.Templates.Error(w, http.StatusBadRequest, "This sign-in has expired or was already finished.",
			"Go back to the application and sign in again.")
		return flow{}, false
	}
	if err != nil {
		h.internal(w, err)
		return flow{}, false
	}
	if stage != "" && f.Stage != stage {
		// The person skipped a step (or used the back button): send them to
		// the step the flow is really at, never past it.
		http.Redirect(w, r, stagePath(f.Stage), http.StatusSeeOther)
		return flow{}, false
	}
	if r.Method == http.MethodPost && !checkCSRF(r, f.CSRF) {
		h.Templates.Error(w, http.StatusForbidden, "The form could not be verified (it may be stale).",
			"Go back to the application and sign in again.")
		return flow{}, false
	}
	return f, true
}

func stagePath(stage string) string {
	switch stage {
	case stageTOTP:
		return "/login/totp"
	case stageNewPassword:
		return "/login/new-password"
	case stageEnroll:
		return "/login/enroll"
	}
	return "/login"
}

func (h *Handler) clientName(ctx context.Context, f flow) string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	if id := q.Get("client_id"); id != "" && h.ClientName != nil {
		return h.ClientName(ctx, id)
	}
	return ""
}

func (h *Handler) passwordPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stagePassword)
	if !ok {
		return
	}
	data := passwordData{Client: h.clientName(r.Context(), f), Email: r.URL.Query().Get("login_hint"), Passkey: h.Passkeys != nil}
	if f.UserID != "" {
		u, err := h.Users.ByID(r.Context(), f.UserID)
		if err != nil {
			h.internal(w, err)
			return
		}
		data.Email, data.StepUp = u.Email, true
	}
	h.Templates.Render(w, http.StatusOK, "login", "Sign in", f.CSRF, data)
}

// passwordSubmit checks the password. Three round trips take a person on to
// the code form: the flow, then (users.Store.SignIn) the attempt's
// reservation with the account, password hash and second factor, then the
// flow's next stage with what the success owes the throttle.
//
// In a step-up (the flow names its user) the password must be that user's:
// the form's email is ignored.
func (h *Handler) passwordSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stagePassword)
	if !ok {
		return
	}
	ctx := r.Context()
	email := r.PostFormValue("email")
	data := passwordData{Client: h.clientName(ctx, f), Email: email, Remember: r.PostFormValue("remember") != "",
		Passkey: h.Passkeys != nil}
	if f.UserID != "" {
		u, err := h.Users.ByID(ctx, f.UserID)
		if err != nil {
			h.internal(w, err)
			return
		}
		email, data.Email, data.StepUp = u.Email, u.Email, true
	}
	si, err := h.Users.SignIn(ctx, email, r.PostFormValue("password"), clientIP(r))
	var throttled *users.ThrottledError
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(throttled.RetryAfter.Seconds()))))
		data.Error = fmt.Sprintf("Too many failed attempts. Wait %s, then try again.", humanDuration(throttled.RetryAfter))
		h.Templates.Render(w, http.StatusTooManyRequests, "login", "Sign in", f.CSRF, data)
		return
	case errors.Is(err, users.ErrInvalidCredentials), errors.Is(err, users.ErrInvalidEmail):
		data.Error = "The email or password is not right. Check them and try again."
		if data.StepUp {
			data.Error = "That password is not right. Try again."
		}
		h.Templates.Render(w, http.StatusUnauthorized, "login", "Sign in", f.CSRF, data)
		return
	case errors.Is(err, users.ErrDisabled):
		data.Error = "This account is disabled. Contact your administrator."
		h.Templates.Render(w, http.StatusForbidden, "login", "Sign in", f.CSRF, data)
		return
	case errors.Is(err, users.ErrPasswordExpired):
		data.Error = "This temporary password has expired. Ask your administrator for a new one."
		h.Templates.Render(w, http.StatusForbidden, "login", "Sign in", f.CSRF, data)
		return
	case err != nil:
		h.internal(w, err)
		return
	}

	ctx, u := db.Pipeline(ctx, h.Pool)
	si.QueueSucceeded(ctx)
	user := si.User
	f.MustChangePassword = si.MustChangePassword
	f.Remember = data.Remember
	// A passkey is a second factor too.
	enrolled := si.SecondFactor || si.Passkey
	if !enrolled && !h.RequireMFA && !user.RequireMFA && f.StepUpSID == "" {
		h.complete(ctx, w, r, f, user.ID, []string{sessions.AMRPassword}, sessions.ACRPassword)
		return
	}
	next := secondStage(enrolled)
	h.queueAdvance(ctx, f, next, user.ID)
	if err := u.CommitAsync(ctx); err != nil {
		h.internal(w, err)
		return
	}
	http.Redirect(w, r, stagePath(next), http.StatusSeeOther)
}

// complete creates the SSO session (with a fresh cookie) and returns the
// browser to the authorization endpoint; after a temporary password it asks
// for the person's own first. It commits the pipeline in ctx, with what the
// caller queued before.
func (h *Handler) complete(ctx context.Context, w http.ResponseWriter, r *http.Request, f flow, userID string, amr []string, acr string) {
	if f.MustChangePassword {
		h.queueToNewPassword(ctx, f, userID, amr, acr)
		if err := unit(ctx).CommitAsync(ctx); err != nil {
			h.internal(w, err)
			return
		}
		http.Redirect(w, r, stagePath(stageNewPassword), http.StatusSeeOther)
		return
	}
	next, _, ok := h.establish(ctx, w, r, f, userID, amr, acr)
	if ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// establish creates (or, for a step-up, upgrades) the SSO session and ends
// the flow, committing them with whatever the pipeline in ctx holds in one
// round trip before the redirect that lets the browser use the session; it
// returns where to go next and the session's sid.
func (h *Handler) establish(ctx context.Context, w http.ResponseWriter, r *http.Request, f flow, userID string, amr []string, acr string) (next, sid string, ok bool) {
	if f.StepUpSID != "" {
		sid = f.StepUpSID
		h.Sessions.QueueStepUp(ctx, w, sid, userID, amr, acr)
	} else {
		s := h.Sessions.QueueCreate(ctx, w, sessions.NewSession{
			UserID: userID, AuthTime: h.Now(), AMR: amr, ACR: acr,
			UserAgent: r.UserAgent(), IP: clientIP(r), Remember: f.Remember,
		})
		sid = s.ID
	}
	next = h.queueFinish(ctx, w, f)
	if err := unit(ctx).CommitAsync(ctx); err != nil {
		h.internal(w, err)
		return "", "", false
	}
	return next, sid, true
}

func (h *Handler) internal(w http.ResponseWriter, err error) {
	h.Logger.Error("login", "err", err)
	h.Templates.Error(w, http.StatusInternalServerError, "Something went wrong on our side.", "Try again in a moment.")
}

// clientIP is the client's address: the peer's, which the ops middleware
// has already replaced with the X-Forwarded-For client when the peer is a
// trusted proxy (IDP_TRUSTED_PROXIES).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func humanDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d seconds", int(math.Ceil(d.Seconds())))
	}
	return fmt.Sprintf("%d minutes", int(math.Ceil(d.Minutes())))
}
