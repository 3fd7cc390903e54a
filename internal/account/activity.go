package account

import (
	"context"
	"strings"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
)

// recentActivity is how many audit entries about the person /account shows:
// enough to notice a change they did not make.
const recentActivity = 10

// activityView is one audit entry about the person, said to them. Who did
// it is "you", "an administrator" or the provider, never an administrator's
// identity.
type activityView struct {
	When, WhenISO string
	What          string
	Action        string // the recorded action, e.g. users.change_password
}

// revokedBecause says why sessions ended, to their owner, by reason.
var revokedBecause = map[string]string{
	sessions.ReasonLogout:          "signed out from an app",
	sessions.ReasonUserSignOut:     "you signed out a session here",
	sessions.ReasonUserSignOutAll:  "you signed out everywhere",
	sessions.ReasonAdminRevoke:     "an administrator ended them",
	sessions.ReasonExpired:         "they expired",
	sessions.ReasonUserDisabled:    "your account was disabled",
	sessions.ReasonFactorsChanged:  "your password, passkeys or two-factor authentication changed",
	sessions.ReasonPasswordChanged: "your password changed",
	sessions.ReasonUserReported:    "you said a sign-in or change was not yours",
}

// activity returns the latest audit entries about userID, in words.
func (h *Handler) activity(ctx context.Context, userID string) ([]activityView, error) {
	entries, err := audit.List(ctx, h.Pool, audit.Query{UserID: userID, AboutOnly: true, Limit: recentActivity})
	if err != nil {
		return nil, err
	}
	now := h.Now()
	out := make([]activityView, 0, len(entries))
	for _, e := range entries {
		out = append(out, activityView{When: pages.Ago(now, e.At), WhenISO: e.At.UTC().Format(time.RFC3339),
			What: describe(e, audit.User(userID)), Action: e.Action})
	}
	return out, nil
}

// describe says what e, an entry about the person whose own actor is self,
// records.
func describe(e audit.Entry, self string) string {
	d := e.Facts()
	who := "An administrator"
	switch {
	case e.Actor == self:
		who = "You"
	case e.Actor == audit.System:
		who = "The sign-in service"
	}
	switch e.Action {
	case "sessions.revoke":
		why := revokedBecause[d.Reason]
		if why == "" {
			why = strings.ReplaceAll(d.Reason, "_", " ")
		}
		return pages.Plural(d.Sessions, "session") + " ended: " + why
	case audit.ActionChangePassword:
		return who + " changed your password"
	case audit.ActionResetPassword:
		return who + " reset your password from a link sent by mail"
	case "users.set_password":
		if d.Temporary != nil && *d.Temporary {
			return who + " set a temporary password for you"
		}
		return who + " set your password"
	case audit.ActionEnableMFA:
		return who + " set up two-factor authentication"
	case audit.ActionDisableMFA:
		return who + " turned two-factor authentication off"
	case audit.ActionAddPasskey:
		return who + " added a passkey"
	case audit.ActionRemovePasskey, "users.remove_passkey":
		return who + " removed a passkey"
	case audit.ActionRegenerateRecoveryCodes:
		return who + " made new recovery codes"
	case "users.reset_mfa":
		return who + " reset your two-factor authentication"
	case "users.require_mfa":
		if d.Require != nil && !*d.Require {
			return who + " stopped requiring two-factor authentication of you"
		}
		return who + " required two-factor authentication of you"
	case "users.disable":
		return who + " disabled your account"
	case "users.enable":
		return who + " enabled your account"
	case "users.create":
		return who + " created your account"
	case "alerts.reported":
		return who + " said a sign-in or change told by mail was not yours"
	}
	return e.Action
}
