package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// FreshFactor is how recent the administrator's last second factor must be
// for a destructive action: deleting an account, setting a password,
// resetting 2FA, creating, promoting or demoting an administrator, ending
// an administrator's sessions, and marking an app as an admin service
// account. Older, the action's form carries a code field and the action
// is refused without a current code. A session left open on an unlocked
// computer thus cannot do lasting harm after five minutes.
const FreshFactor = 5 * time.Minute

// needsCode reports whether adm must give a code with a destructive
// action now.
func (h *Handler) needsCode(adm signedIn) bool {
	return !adm.session.SecondFactorWithin(FreshFactor, h.now())
}

// confirmed reports whether adm gave a second factor within FreshFactor,
// or gives one now: the form's code, verified and recorded on the session,
// so the actions of the next few minutes need none. Otherwise it answers
// with refuse (the page again, with the code field, saying what was
// wrong) and reports false; nothing was changed. refuse gets adm's
// session as it is after the attempt.
func (h *Handler) confirmed(w http.ResponseWriter, r *http.Request, adm *signedIn, refuse func(status int, msg string)) bool {
	if !h.needsCode(*adm) {
		return true
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	if code == "" {
		refuse(http.StatusForbidden, fmt.Sprintf("This action needs a current code from your authenticator app "+
			"(your last second factor was more than %d minutes ago): enter it with the action, or confirm it's you again, "+
			"with a passkey or a code, from the link on this page. Nothing was changed.", int(FreshFactor/time.Minute)))
		return false
	}
	ctx := r.Context()
	var verdict error
	err := db.Tx(ctx, h.Admin.Pool, func(ctx context.Context) error {
		if _, err := h.Codes.Verify(ctx, adm.ID, code); err != nil {
			if isVerdict(err) {
				verdict = err // committed: a wrong code's failure counts
				return nil
			}
			return err
		}
		h.Sessions.QueueSecondFactorGiven(ctx, adm.session.ID, adm.ID)
		return nil
	})
	if errors.Is(err, sessions.ErrNoSession) { // ended meanwhile
		h.begin(w, r, login.Start{})
		return false
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return false
	}
	if errors.Is(verdict, mfa.ErrNotEnrolled) {
		refuse(http.StatusForbidden, "Your account has no authenticator app to give a code from: "+
			"confirm it's you again with your passkey from the link on this page. Nothing was changed.")
		return false
	}
	if verdict != nil {
		p, _ := pages.Explain(verdict)
		pages.SetRetryAfter(w, p)
		refuse(p.Status, p.Message+" Nothing was changed.")
		return false
	}
	adm.session.SecondFactorAt = h.now()
	return true
}

// isVerdict reports whether err is mfa's judgement of the code rather
// than a failure of ours.
func isVerdict(err error) bool {
	var te *mfa.ThrottledError
	return errors.Is(err, mfa.ErrInvalidCode) || errors.Is(err, mfa.ErrReplayed) || errors.Is(err, mfa.ErrMalformedCode) ||
		errors.Is(err, mfa.ErrNotEnrolled) || errors.As(err, &te)
}

// guard says whom an action on a user's page needs a fresh code for.
type guard int

const (
	anyUser    guard = iota // every user: the action is destructive whoever it is done to
	onlyAdmins              // administrators only (ending their sessions)
)

// confirmedFor is confirmed for an action on the page of user id: with
// onlyAdmins, only when that user is an administrator. A refusal shows
// the user's page again, with the code field and the message.
func (h *Handler) confirmedFor(w http.ResponseWriter, r *http.Request, adm *signedIn, id string, g guard) bool {
	if g == onlyAdmins {
		u, err := h.Admin.Users.ByID(r.Context(), id)
		switch {
		case errors.Is(err, users.ErrNotFound):
			return true // the action itself answers that there is no such user
		case err != nil:
			h.Errors.Internal(w, r, err)
			return false
		case !u.IsAdmin:
			return true
		}
	}
	return h.confirmed(w, r, adm, func(status int, msg string) {
		h.renderUser(w, r, *adm, id, status, userData{Error: msg})
	})
}

// confirmAgain is the other way to give a fresh second factor, for an
// administrator with a passkey (who may have no authenticator app) as for
// one with codes: a step-up of the session, which records the factor, and
// then back to the console page next.
func (h *Handler) confirmAgain(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administrator(w, r)
	if !ok {
		return
	}
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/admin") || strings.HasPrefix(next, "/admin/api") || strings.ContainsAny(next, "\\\r\n") {
		next = "/admin"
	}
	if !h.needsCode(adm) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	want := ""
	if h.RequirePasskey {
		want = sessions.ACRPhishingResistant
	}
	// Back here once the factor is given: fresh by then, so on to next.
	h.begin(w, r, login.Start{StepUp: &adm.session, Want: want})
}
