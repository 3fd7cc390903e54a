package account

import (
	"context"
	"net/http"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/pages"
)

// passwordSubmit changes the password. It asks for the current one, so a
// stolen session cookie alone cannot lock the owner out, and like a change
// of factors it ends the person's other sessions and all their tokens in
// the same transaction (their apps are told): whoever knew the old password
// and signed in with it is signed out.
func (h *Handler) passwordSubmit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	fail := func(status int, msg string) {
		h.renderOverview(w, r, s, status, overviewData{PasswordError: msg + " Your password was not changed."})
	}
	current, next, confirm := r.PostFormValue("current_password"), r.PostFormValue("new_password"), r.PostFormValue("confirm_password")
	if current == "" || next == "" {
		fail(http.StatusBadRequest, "Enter your current password and the new one.")
		return
	}
	if next != confirm {
		fail(http.StatusBadRequest, "The new password and its confirmation differ.")
		return
	}
	// The policy first: a refused new password costs no guess of the
	// current one.
	chosen, err := h.Users.ChoosePassword(r.Context(), next)
	if p, known := pages.Explain(err); known {
		fail(p.Status, p.Message)
		return
	} else if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	if p, ok := h.checkPassword(w, r, s, current); !ok {
		if p.Status != 0 {
			fail(p.Status, p.Message)
		}
		return
	}
	err = h.changeFactors(r.Context(), s, audit.ActionChangePassword, func(ctx context.Context) error {
		return h.Users.StorePassword(ctx, s.UserID, chosen, false)
	})
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?notice=password-changed", http.StatusSeeOther)
}
