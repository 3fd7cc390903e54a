package login

import (
	"context"
	"net/http"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/pages"
)

type newPasswordData struct {
	Client, Error string
	// Reset: the password is forgotten, not temporary.
	Reset bool
}

// queueToNewPassword queues in the unit in ctx the move of a flow whose
// factors are all proven, but whose password was temporary, to the
// new-password form, remembering what the session will get.
func (h *Handler) queueToNewPassword(ctx context.Context, f flow, userID string, amr []string, acr string) {
	unit(ctx).Queue(`UPDATE login_flows SET stage = $2, user_id = $3, pending_amr = $4, pending_acr = $5, remember = $6
		WHERE id_hash = $1`,
		f.idHash, stageNewPassword, userID, amr, acr, f.Remember)
}

func (h *Handler) newPasswordPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageNewPassword)
	if !ok {
		return
	}
	h.Templates.Render(w, http.StatusOK, "new-password", "Choose your password", f.CSRF,
		newPasswordData{Client: h.clientName(r.Context(), f), Reset: f.Reset}, h.formTargets(r.Context(), f)...)
}

// newPasswordSubmit replaces a temporary password with the person's own,
// then makes the session as the other stages would have, and ends the
// person's other sessions: a password change always does.
func (h *Handler) newPasswordSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := h.flowOrError(w, r, stageNewPassword)
	if !ok {
		return
	}
	ctx := r.Context()
	fail := func(status int, msg string) {
		h.observe(stepNewPassword, outcomeInvalid)
		h.Templates.Render(w, status, "new-password", "Choose your password", f.CSRF,
			newPasswordData{Client: h.clientName(ctx, f), Error: msg, Reset: f.Reset}, h.formTargets(ctx, f)...)
	}
	next, confirm := r.PostFormValue("new_password"), r.PostFormValue("confirm_password")
	if next != confirm {
		fail(http.StatusBadRequest, "The two passwords differ. Type the same new password twice.")
		return
	}
	chosen, err := h.Users.ChoosePassword(ctx, next)
	if p, known := pages.Explain(err); known {
		fail(p.Status, p.Message)
		return
	} else if err != nil {
		h.internal(w, r, stepNewPassword, err)
		return
	}
	// A temporary password is known to an administrator: it must go. A
	// forgotten one may come back (the person remembered it).
	if !f.Reset {
		same, err := h.Users.SameAsCurrent(ctx, f.UserID, next)
		if err != nil {
			h.internal(w, r, stepNewPassword, err)
			return
		}
		if same {
			fail(http.StatusBadRequest, "That is the password you were given. Choose one only you know.")
			return
		}
	}
	if err := h.Users.StorePassword(ctx, f.UserID, chosen, false); err != nil {
		h.internal(w, r, stepNewPassword, err)
		return
	}
	pctx, _ := db.Pipeline(ctx, h.Pool)
	dest, sid, ok := h.establish(pctx, w, r, stepNewPassword, f, f.UserID, f.PendingAMR, f.PendingACR)
	if !ok {
		return
	}
	action := audit.ActionChangePassword
	if f.Reset {
		action = audit.ActionResetPassword
	}
	// Every other session ends and every app is told (sessions.Revoke),
	// offline tokens too: after a reset, whoever had the old password or
	// a session opened with it is out.
	if err := h.Sessions.FactorsChanged(ctx, f.UserID, sid, action); err != nil {
		h.internal(w, r, stepNewPassword, err)
		return
	}
	h.observe(stepNewPassword, outcomeSignedIn)
	http.Redirect(w, r, dest, http.StatusSeeOther)
}
