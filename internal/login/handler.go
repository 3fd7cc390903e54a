package login

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/reset"
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
	Errors    *pages.Errors
	Logger    *slog.Logger
	Now       func() time.Time
	FlowTTL   time.Duration
	// Observe, when set, is told the outcome of every sign-in form
	// submission: its step (password, totp, enroll, new_password, the
	// passkey steps passkey, passkey_factor, passkey_enroll, and the
	// password reset's forgot and reset) and
	// outcome (signed_in, next_step, wrong_password, wrong_code, throttled,
	// rejected, invalid, error). The metrics count them.
	Observe func(step, outcome string)
	// RequireMFA makes every user enroll a second factor before reaching any app.
	RequireMFA bool
	// SelfSignup links the sign-in page to /signup (package verify).
	SelfSignup bool
	// ClientName returns an app's display name for "continue to …".
	ClientName func(ctx context.Context, clientID string) string
	// RedirectURIs returns an app's registered redirect URIs: a sign-in
	// for it ends there, so its forms may lead there (web.Templates.Render).
	RedirectURIs func(ctx context.Context, clientID string) []string
	// Reset, when set (mail is configured), offers "Forgot your
	// password?": a link by mail, then the sign-in's own steps.
	Reset *reset.Service
	// OnSignIn, when set, is told of every new session (not a step-up)
	// in the unit that creates it, and may queue into it (package alerts:
	// the device cookie and the new-device alert).
	OnSignIn func(ctx context.Context, w http.ResponseWriter, r *http.Request, s sessions.Session)
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
	h.mountReset(mux)
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
	// Forgot links to the password reset (mail is configured).
	Forgot bool
	// Signup links to self-registration.
	Signup bool
}

// Sign-in steps and outcomes, as Observe is told them.
const (
	stepPassword    = "password"
	stepTOTP        = "totp"
	stepEnroll      = "enroll"
	stepNewPassword = "new_password"

	outcomeSignedIn      = "signed_in"
	outcomeNextStep      = "next_step"
	outcomeWrongPassword = "wrong_password"
	outcomeWrongCode     = "wrong_code"
	outcomeThrottled     = "throttled"
	outcomeRejected      = "rejected"
	outcomeInvalid       = "invalid"
	outcomeError         = "error"
)

// observe reports a form submission's outcome.
func (h *Handler) observe(step, outcome string) {
	if h.Observe != nil {
		h.Observe(step, outcome)
	}
}

// outcomeOf is the outcome a problem the person is shown stands for.
func outcomeOf(step string, p pages.Problem) string {
	switch p.Status {
	case http.StatusUnauthorized:
		if step == stepPassword {
			return outcomeWrongPassword
		}
		return outcomeWrongCode
	case http.StatusTooManyRequests:
		return outcomeThrottled
	case http.StatusForbidden:
		return outcomeRejected
	}
	return outcomeInvalid
}

// internal answers an error of ours on a step's submission (step "" for a
// page view).
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, step string, err error) {
	if step != "" {
		h.observe(step, outcomeError)
	}
	h.Errors.Internal(w, r, err)
}

// flowOrError loads the flow, rendering the expired-flow page when there is
// none. step names the submission for Observe ("" for a page view).
func (h *Handler) flowOrError(w http.ResponseWriter, r *http.Request, stage string) (flow, bool) {
	step := ""
	if r.Method == http.MethodPost {
		step = map[string]string{stagePassword: stepPassword, stageTOTP: stepTOTP, stageEnroll: stepEnroll,
			stageNewPassword: stepNewPassword}[stage]
	}
	return h.stepFlow(w, r, stage, step)
}

// stepFlow is flowOrError for a submission Observe knows as step; stage
// "" takes a flow at any stage.
func (h *Handler) stepFlow(w http.ResponseWriter, r *http.Request, stage, step string) (flow, bool) {
	f, err := h.loadFlow(r.Context(), r)
	if errors.Is(err, ErrNoFlow) {
		h.observe(step, outcomeInvalid)
		h.Templates.Error(w, http.StatusBadRequest, "This sign-in has expired or was already finished.",
			"Go back to the application and sign in again.")
		return flow{}, false
	}
	if err != nil {
		h.internal(w, r, step, err)
		return flow{}, false
	}
	if stage != "" && f.Stage != stage {
		// The person skipped a step (or used the back button): send them to
		// the step the flow is really at, never past it.
		http.Redirect(w, r, stagePath(f.Stage), http.StatusSeeOther)
		return flow{}, false
	}
	if r.Method == http.MethodPost && !checkCSRF(r, f.CSRF) {
		h.observe(step, outcomeRejected)
		h.Errors.StaleForm(w, "Go back to the application and sign in again.")
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

// clientName is what the sign-in is for, as its pages name it: the app
// whose authorization request it resumes, or the admin console.
func (h *Handler) clientName(ctx context.Context, f flow) string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	if id := q.Get("client_id"); id != "" && h.ClientName != nil {
		return h.ClientName(ctx, id)
	}
	if f.AuthorizeQuery == "" && (f.ReturnTo == "/admin" || strings.HasPrefix(f.ReturnTo, "/admin/") || strings.HasPrefix(f.ReturnTo, "/admin?")) {
		return "the admin console"
	}
	return ""
}

// formTargets are where the forms of f's pages may end, besides this
// server: the redirect URIs of the app the sign-in is for (none when it
// returns to a page here).
func (h *Handler) formTargets(ctx context.Context, f flow) []string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	if id := q.Get("client_id"); id != "" && h.RedirectURIs != nil {
		return h.RedirectURIs(ctx, id)
	}
	return nil
}

func (h *Handler) passwordPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stagePassword)
	if !ok {
		return
	}
	data := passwordData{Client: h.clientName(r.Context(), f), Email: r.URL.Query().Get("login_hint"), Passkey: h.Passkeys != nil,
		Forgot: h.Reset != nil, Signup: h.SelfSignup}
	if f.UserID != "" {
		u, err := h.Users.ByID(r.Context(), f.UserID)
		if err != nil {
			h.internal(w, r, "", err)
			return
		}
		data.Email, data.StepUp = u.Email, true
	}
	h.Templates.Render(w, http.StatusOK, "login", "Sign in", f.CSRF, data, h.formTargets(r.Context(), f)...)
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
		Passkey: h.Passkeys != nil, Forgot: h.Reset != nil, Signup: h.SelfSignup}
	if f.UserID != "" {
		u, err := h.Users.ByID(ctx, f.UserID)
		if err != nil {
			h.internal(w, r, stepPassword, err)
			return
		}
		email, data.Email, data.StepUp = u.Email, u.Email, true
	}
	si, err := h.Users.SignIn(ctx, email, r.PostFormValue("password"), clientIP(r))
	if errors.Is(err, users.ErrInvalidEmail) {
		// Not an address at all: said as a wrong one, which tells nothing
		// about which accounts exist.
		err = users.ErrInvalidCredentials
	}
	if err != nil {
		p, known := pages.Explain(err)
		if !known {
			h.internal(w, r, stepPassword, err)
			return
		}
		if data.StepUp && errors.Is(err, users.ErrInvalidCredentials) {
			p.Message = "That password is not right. Try again."
		}
		h.observe(stepPassword, outcomeOf(stepPassword, p))
		pages.SetRetryAfter(w, p)
		data.Error = p.Message
		h.Templates.Render(w, p.Status, "login", "Sign in", f.CSRF, data, h.formTargets(ctx, f)...)
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
		h.complete(ctx, w, r, stepPassword, f, user.ID, []string{sessions.AMRPassword}, sessions.ACRPassword)
		return
	}
	next := secondStage(enrolled)
	h.queueAdvance(ctx, f, next, user.ID)
	if err := u.CommitAsync(ctx); err != nil {
		h.internal(w, r, stepPassword, err)
		return
	}
	h.observe(stepPassword, outcomeNextStep)
	http.Redirect(w, r, stagePath(next), http.StatusSeeOther)
}

// complete creates the SSO session (with a fresh cookie) and returns the
// browser to the authorization endpoint; after a temporary password it asks
// for the person's own first. It commits the pipeline in ctx, with what the
// caller queued before, and reports the outcome of step.
func (h *Handler) complete(ctx context.Context, w http.ResponseWriter, r *http.Request, step string, f flow, userID string, amr []string, acr string) {
	if f.MustChangePassword {
		h.queueToNewPassword(ctx, f, userID, amr, acr)
		if err := unit(ctx).CommitAsync(ctx); err != nil {
			h.internal(w, r, step, err)
			return
		}
		h.observe(step, outcomeNextStep)
		http.Redirect(w, r, stagePath(stageNewPassword), http.StatusSeeOther)
		return
	}
	next, _, ok := h.establish(ctx, w, r, step, f, userID, amr, acr)
	if ok {
		h.observe(step, outcomeSignedIn)
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// establish creates (or, for a step-up, upgrades) the SSO session and ends
// the flow, committing them with whatever the pipeline in ctx holds in one
// round trip before the redirect that lets the browser use the session; it
// returns where to go next and the session's sid.
func (h *Handler) establish(ctx context.Context, w http.ResponseWriter, r *http.Request, step string, f flow, userID string, amr []string, acr string) (next, sid string, ok bool) {
	if f.StepUpSID != "" {
		sid = f.StepUpSID
		h.Sessions.QueueStepUp(ctx, w, sid, userID, amr, acr)
	} else {
		s := h.Sessions.QueueCreate(ctx, w, sessions.NewSession{
			UserID: userID, AuthTime: h.Now(), AMR: amr, ACR: acr,
			UserAgent: r.UserAgent(), IP: clientIP(r), Remember: f.Remember,
		})
		sid = s.ID
		if h.OnSignIn != nil {
			h.OnSignIn(ctx, w, r, s)
		}
	}
	next = h.queueFinish(ctx, w, f)
	if err := unit(ctx).CommitAsync(ctx); err != nil {
		h.internal(w, r, step, err)
		return "", "", false
	}
	return next, sid, true
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
