// Package login owns the sign-in pages and the state of a sign-in in
// progress (a login flow): which authorization request it resumes, who has
// proved their password, and how many wrong second factors it has seen.
//
// Like the steps of dex's authflow, login never issues codes itself: when
// the person has signed in it creates the SSO session and hands control back
// to the authorization endpoint with the original request.
package login

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
)

// Stages of a flow.
const (
	stagePassword = "password"
	stageTOTP     = "totp"   // password proven, a code is due
	stageEnroll   = "enroll" // password proven, 2FA must be set up first
	// Every factor proven; the password was temporary and the person must
	// choose their own before the session is made.
	stageNewPassword = "new-password"
)

// secondStage is where a person who proved their password goes next: the
// code form, or setting up a second factor first.
func secondStage(enrolled bool) string {
	if enrolled {
		return stageTOTP
	}
	return stageEnroll
}

// ErrNoFlow means the browser has no sign-in in progress (or it expired).
var ErrNoFlow = errors.New("login: no sign-in in progress")

type flow struct {
	idHash         []byte
	CSRF           string
	AuthorizeQuery string
	UserID         string
	Stage          string
	MFAFailures    int
	StepUpSID      string
	ReturnTo       string
	// MustChangePassword: the password proven was temporary.
	MustChangePassword bool
	// PendingAMR and PendingACR are what the session gets once the new
	// password is in (stageNewPassword).
	PendingAMR []string
	PendingACR string
	// Remember: "keep me signed in on this device" was ticked.
	Remember bool
	// WantACR is the class a step-up must reach: sessions.ACRPhishingResistant
	// when the app asked for a passkey, "" for two factors of any kind.
	WantACR string
	// Reset: the flow began at a password reset link; its new password
	// replaces a forgotten one (MustChangePassword is set too).
	Reset bool
}

// enrollmentOwner is who a TOTP secret this flow begins belongs to: this
// sign-in and no other (mfa.LoginFlowOwner).
func (f flow) enrollmentOwner() string { return mfa.LoginFlowOwner(f.idHash) }

// Start options, from the authorization endpoint.
type Start struct {
	// AuthorizeQuery is the authorization request to resume afterwards.
	AuthorizeQuery url.Values
	// LoginHint pre-fills the email field.
	LoginHint string
	// StepUp names a session whose user must now give a second factor
	// (acr_values asked for two factors), or a passkey (Want).
	StepUp *sessions.Session
	// Want is the class the step-up must reach: ACRPhishingResistant for
	// a passkey; "" for two factors.
	Want string
	// ReturnTo is the local page to come back to when there is no
	// authorization request to resume ("/admin"); default /account.
	ReturnTo string
}

func (h *Handler) flowCookieName() string {
	if h.Sessions.Secure {
		return "__Host-idp_login"
	}
	return "idp_login"
}

// Begin records a new flow and sets its cookie; it returns where to send the
// browser. Any earlier flow of this browser is simply superseded.
func (h *Handler) Begin(ctx context.Context, w http.ResponseWriter, s Start) (string, error) {
	_, next, err := h.begin(ctx, w, s)
	return next, err
}

// begin is Begin, returning the flow too.
func (h *Handler) begin(ctx context.Context, w http.ResponseWriter, s Start) (flow, string, error) {
	token := sessions.NewToken()
	f := flow{CSRF: sessions.NewToken(), AuthorizeQuery: s.AuthorizeQuery.Encode(), Stage: stagePassword,
		ReturnTo: localPath(s.ReturnTo), WantACR: s.Want}
	next := "/login"
	if s.LoginHint != "" {
		next += "?" + url.Values{"login_hint": {s.LoginHint}}.Encode()
	}
	var stepUpSID, userID *string
	if s.StepUp != nil {
		// A person with a second factor gives it. One without must prove
		// the password again before setting one up: the session may be a
		// stolen password-only cookie, and enrolling the holder's own
		// authenticator would hand them a two-factor session, the recovery
		// codes and the end of the owner's other sessions.
		// A passkey is a second factor too.
		totp, passkey, err := h.factors(ctx, s.StepUp.UserID)
		if err != nil {
			return flow{}, "", fmt.Errorf("login: begin: %w", err)
		}
		f.Stage = stagePassword
		if totp || passkey {
			f.Stage = stageTOTP
		}
		stepUpSID, userID = &s.StepUp.ID, &s.StepUp.UserID
		next = stagePath(f.Stage)
	}
	now := h.Now()
	ctx, u := db.Pipeline(ctx, h.Pool)
	u.Queue(`
		INSERT INTO login_flows (id_hash, csrf_token, authorize_query, user_id, stage, step_up_sid, created_at, expires_at, return_path, want_acr)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		sessions.HashToken(token), f.CSRF, f.AuthorizeQuery, userID, f.Stage, stepUpSID, now, now.Add(h.FlowTTL), f.ReturnTo, f.WantACR)
	if err := u.CommitAsync(ctx); err != nil {
		return flow{}, "", fmt.Errorf("login: begin: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: h.flowCookieName(), Value: token, Path: "/", HttpOnly: true, Secure: h.Sessions.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(h.FlowTTL.Seconds()),
	})
	f.idHash = sessions.HashToken(token)
	if userID != nil {
		f.UserID = *userID
	}
	if stepUpSID != nil {
		f.StepUpSID = *stepUpSID
	}
	return f, next, nil
}

func (h *Handler) loadFlow(ctx context.Context, r *http.Request) (flow, error) {
	c, err := r.Cookie(h.flowCookieName())
	if err != nil || c.Value == "" {
		return flow{}, ErrNoFlow
	}
	var f flow
	var userID, stepUp *string
	f.idHash = sessions.HashToken(c.Value)
	err = db.Conn(ctx, h.Pool).QueryRow(ctx, `
		SELECT csrf_token, authorize_query, user_id::text, stage, mfa_failures, step_up_sid::text, return_path,
			must_change_password, pending_amr, pending_acr, remember, want_acr, reset
		FROM login_flows WHERE id_hash = $1 AND expires_at > $2`, f.idHash, h.Now()).
		Scan(&f.CSRF, &f.AuthorizeQuery, &userID, &f.Stage, &f.MFAFailures, &stepUp, &f.ReturnTo,
			&f.MustChangePassword, &f.PendingAMR, &f.PendingACR, &f.Remember, &f.WantACR, &f.Reset)
	if errors.Is(err, pgx.ErrNoRows) {
		return flow{}, ErrNoFlow
	}
	if err != nil {
		return flow{}, fmt.Errorf("login: load flow: %w", err)
	}
	if userID != nil {
		f.UserID = *userID
	}
	if stepUp != nil {
		f.StepUpSID = *stepUp
	}
	return f, nil
}

// checkCSRF compares the form's token with the flow's in constant time.
func checkCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf_token")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// queueAdvance queues in the unit in ctx the flow's move on to stage, for
// userID.
func (h *Handler) queueAdvance(ctx context.Context, f flow, stage, userID string) {
	unit(ctx).Queue(`UPDATE login_flows SET stage = $2, user_id = $3, must_change_password = $4, remember = $5
		WHERE id_hash = $1`,
		f.idHash, stage, userID, f.MustChangePassword, f.Remember)
}

// Every write of a sign-in in progress goes out in a pipeline (db.Pipeline)
// committed without waiting for the disk (CommitAsync): a crash of the
// database can lose a flow, or a session made a moment before, and the
// person signs in again; the first token issued from a session is a
// synchronous commit that makes every write before it durable.

// unit is the pipeline the queue methods add to.
func unit(ctx context.Context) *db.Unit {
	u, ok := db.From(ctx)
	if !ok {
		panic("login: a queue method called outside a unit of work")
	}
	return u
}

// queueFinish queues in the unit in ctx the end of the flow, clears its
// cookie and returns where the browser goes next: back to the
// authorization endpoint with the original request, or to the local page
// the sign-in started from.
func (h *Handler) queueFinish(ctx context.Context, w http.ResponseWriter, f flow) string {
	unit(ctx).Queue(`DELETE FROM login_flows WHERE id_hash = $1`, f.idHash)
	http.SetCookie(w, &http.Cookie{Name: h.flowCookieName(), Value: "", Path: "/", HttpOnly: true,
		Secure: h.Sessions.Secure, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	if f.AuthorizeQuery == "" {
		if f.ReturnTo != "" {
			return f.ReturnTo
		}
		return "/account"
	}
	return "/oauth2/auth?" + f.AuthorizeQuery
}

// localPath keeps p only if it is a path on this server: never a redirect
// to another site ("//evil.example", "https://…", "/\\evil").
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return ""
	}
	return p
}

// Sweeps are the janitor's for this package's tables: a flow is dead the
// moment it expires, since nothing reads it after.
var Sweeps = []db.Sweep{
	{Table: "login_flows", Key: "id_hash", Due: "expires_at < $1"},
}
