// Package pages owns how the provider's pages speak to a person about what
// went wrong: one mapping from the domain packages' errors to a status and
// the words a person reads (Explain), one renderer for the errors that are
// ours (Errors.Internal, which logs them with the request id and route and
// answers 503 when the database could not serve the request), and the few
// words the pages share for times and counts. login, account, the console
// and the provider's own pages use it, so the same error reads the same
// everywhere.
package pages

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// Problem is what a person is told about an error: the status to answer
// with and a sentence saying what happened and what to do. RetryAfter, when
// set, is how long to wait (a throttle), for the Retry-After header.
type Problem struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

// Explain says err in a person's words. ok is false for an error that is
// ours rather than theirs: render it with Errors.Internal. Pages that show
// the message next to a form use it; a page whose context gives an error
// another meaning (a wrong email at sign-in reads as wrong credentials, so
// it tells nothing about which accounts exist) decides that itself.
func Explain(err error) (p Problem, ok bool) {
	var (
		signInThrottled *users.ThrottledError
		codeThrottled   *mfa.ThrottledError
		policy          *users.PolicyError
	)
	switch {
	case err == nil:
		return Problem{}, false
	case errors.As(err, &signInThrottled):
		return Problem{http.StatusTooManyRequests,
			fmt.Sprintf("Too many failed attempts. Wait %s, then try again.", Duration(signInThrottled.RetryAfter)),
			signInThrottled.RetryAfter}, true
	case errors.As(err, &codeThrottled):
		return Problem{http.StatusTooManyRequests,
			fmt.Sprintf("Too many wrong codes. Wait %s, then try again.", Duration(codeThrottled.RetryAfter)),
			codeThrottled.RetryAfter}, true
	case errors.Is(err, users.ErrInvalidCredentials):
		return Problem{Status: http.StatusUnauthorized, Message: "The email or password is not right. Check them and try again."}, true
	case errors.Is(err, users.ErrDisabled):
		return Problem{Status: http.StatusForbidden, Message: "This account is disabled. Contact your administrator."}, true
	case errors.Is(err, users.ErrPasswordExpired):
		return Problem{Status: http.StatusForbidden, Message: "This temporary password has expired. Ask your administrator for a new one."}, true
	case errors.As(err, &policy):
		return Problem{Status: http.StatusBadRequest, Message: "The new password " + policy.Reason + "."}, true
	case errors.Is(err, users.ErrInvalidEmail):
		return Problem{Status: http.StatusBadRequest, Message: "That is not an email address."}, true
	case errors.Is(err, users.ErrInvalidName):
		return Problem{Status: http.StatusBadRequest,
			Message: fmt.Sprintf("The name must be at most %d characters, without control characters.", users.MaxNameRunes)}, true
	case errors.Is(err, users.ErrEmailTaken):
		return Problem{Status: http.StatusConflict, Message: "An account with that email exists already."}, true
	case errors.Is(err, users.ErrNotFound):
		return Problem{Status: http.StatusNotFound, Message: "There is no such account."}, true
	case errors.Is(err, mfa.ErrMalformedAppCode):
		return Problem{Status: http.StatusBadRequest, Message: "Enter the 6 digits your authenticator app shows."}, true
	case errors.Is(err, mfa.ErrMalformedCode):
		return Problem{Status: http.StatusBadRequest,
			Message: "Enter the 6-digit code from your authenticator app, or one of your recovery codes (like abcde-fghij)."}, true
	case errors.Is(err, mfa.ErrReplayed):
		return Problem{Status: http.StatusUnauthorized, Message: "That code was already used. Wait for the next code from your app and enter it."}, true
	case errors.Is(err, mfa.ErrInvalidCode):
		return Problem{Status: http.StatusUnauthorized,
			Message: "That code is not right. Check that your phone's clock is set automatically and enter the current code."}, true
	case errors.Is(err, mfa.ErrAlreadyEnrolled):
		return Problem{Status: http.StatusConflict, Message: "Two-factor authentication is already on."}, true
	case errors.Is(err, mfa.ErrNotEnrolled):
		return Problem{Status: http.StatusConflict, Message: "Two-factor authentication is not set up."}, true
	case passkey.IsVerdict(err):
		return Problem{Status: passkeyStatus(err), Message: passkey.Message(err)}, true
	case errors.Is(err, sessions.ErrNoSession):
		return Problem{Status: http.StatusUnauthorized, Message: "You are not signed in, or your session has ended. Sign in again."}, true
	}
	return Problem{}, false
}

// SetRetryAfter sets the Retry-After header of a problem that has one.
func SetRetryAfter(w http.ResponseWriter, p Problem) {
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(p.RetryAfter.Seconds()))))
	}
}

// Errors renders the error pages.
type Errors struct {
	Templates *web.Templates
	Logger    *slog.Logger
}

// Show renders the error page for a problem of the person's making, with
// hint saying what to do next.
func (e *Errors) Show(w http.ResponseWriter, p Problem, hint string) {
	SetRetryAfter(w, p)
	e.Templates.Error(w, p.Status, p.Message, hint)
}

// Page renders the error page for err: in the person's words when Explain
// knows it, as an internal error otherwise.
func (e *Errors) Page(w http.ResponseWriter, r *http.Request, err error, hint string) {
	if p, ok := Explain(err); ok {
		e.Show(w, p, hint)
		return
	}
	e.Internal(w, r, err)
}

// Internal answers an error that is ours. When the database could not serve
// the request it is a 503 page saying so (and the request is noted as such
// for the metrics); anything else is logged, with the request id and route,
// and answered 500 with the id for the person to quote. Cookies the failed
// request was about to set are dropped: they would point at nothing.
func (e *Errors) Internal(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	w.Header().Del("Set-Cookie")
	id := ops.RequestID(ctx)
	if db.IsUnavailable(err) {
		ops.NoteUnavailable(ctx)
		e.Logger.WarnContext(ctx, "database unavailable", "request_id", id, "route", r.Pattern, "err", err)
		w.Header().Set("Retry-After", ops.UnavailableRetryAfter)
		e.Templates.Error(w, http.StatusServiceUnavailable,
			"Temporarily unavailable: the sign-in service cannot reach its database right now.",
			"Try again in a moment. Nothing you entered was lost that you cannot enter again.")
		return
	}
	e.Logger.ErrorContext(ctx, "internal error", "request_id", id, "route", r.Pattern, "err", err)
	hint := "Try again in a moment."
	if id != "" {
		hint += " If it keeps happening, tell your administrator this reference: " + id + "."
	}
	e.Templates.Error(w, http.StatusInternalServerError, "Something went wrong on our side.", hint)
}

// StaleForm answers a form whose CSRF token does not verify (it was opened
// before a sign-in changed, or it was not ours): nothing was done.
func (e *Errors) StaleForm(w http.ResponseWriter, hint string) {
	e.Templates.Error(w, http.StatusForbidden, "The form could not be verified (it may be stale). Nothing was changed.", hint)
}

// Duration says how long to wait, rounded up: "30 seconds", "5 minutes".
func Duration(d time.Duration) string {
	if d < time.Minute {
		return Plural(int(math.Ceil(d.Seconds())), "second")
	}
	return Plural(int(math.Ceil(d.Minutes())), "minute")
}

// Ago says how long before now t was, coarsely, as people say it: "just
// now", "5 minutes ago", "3 hours ago", then the date ("on 2 Jan 2026,
// 15:04 UTC").
func Ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return Plural(int(d/time.Minute), "minute") + " ago"
	case d < 24*time.Hour:
		return Plural(int(d/time.Hour), "hour") + " ago"
	}
	return "on " + Time(t)
}

// Until says how long after now t is, coarsely: "in 30 seconds", "in 5
// minutes", then the time ("at 2 Jan 2026, 15:04 UTC").
func Until(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d < time.Minute:
		return "in " + Plural(int(d.Round(time.Second)/time.Second), "second")
	case d < time.Hour:
		return "in " + Plural(int(d/time.Minute), "minute")
	}
	return "at " + Time(t)
}

// Time is how the pages write a moment: "2 Jan 2026, 15:04 UTC".
func Time(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// Plural is "1 minute", "2 minutes".
func Plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// QR serves a QR code image (mfa.Enrollment.QRPNG) as it must be served: it
// carries a secret, so it is never cached.
func QR(w http.ResponseWriter, png []byte) {
	web.NoStore(w)
	w.Header().Set("Content-Type", "image/png")
	w.Write(png) //nolint:errcheck // the client is gone
}

// passkeyStatus is the status of a refused passkey: 401 for an answer
// that did not prove who it claims, 400 for one that came too late, twice
// or malformed, 403 for a disabled account, 409 for a registration that
// conflicts with what is stored, 404 for an unknown passkey id.
func passkeyStatus(err error) int {
	switch {
	case errors.Is(err, passkey.ErrMalformed), errors.Is(err, passkey.ErrChallenge), errors.Is(err, passkey.ErrExpired),
		errors.Is(err, passkey.ErrBinding), errors.Is(err, passkey.ErrInvalidName):
		return http.StatusBadRequest
	case errors.Is(err, passkey.ErrDisabled):
		return http.StatusForbidden
	case errors.Is(err, passkey.ErrAlreadyRegistered), errors.Is(err, passkey.ErrTooMany):
		return http.StatusConflict
	case errors.Is(err, passkey.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusUnauthorized
}
