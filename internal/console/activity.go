package console

import (
	"strings"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/users"
)

// recentActivity is how many audit entries a user's page shows; the rest
// are a call to the admin API or `idp audit` away.
const recentActivity = 20

// activityView is one audit entry on a user's page, in words.
type activityView struct {
	When, WhenISO string
	By            string
	What          string
	Action        string // the recorded action, e.g. users.disable
}

// actions say in words what an audit entry records, by action.
var actions = map[string]string{
	"users.disable":        "Account disabled",
	"users.enable":         "Account enabled",
	"users.delete":         "Account deleted",
	"users.reset_mfa":      "Two-factor authentication reset",
	"users.remove_passkey": "Passkey removed",
	"users.set_password":   "Password set",
	"users.require_mfa":    "Two-factor requirement changed",
	"outbox.retry":         "Logout notification retried",

	audit.ActionEnableMFA:               "Two-factor authentication set up",
	audit.ActionDisableMFA:              "Two-factor authentication turned off",
	audit.ActionRegenerateRecoveryCodes: "New recovery codes made",
	audit.ActionChangePassword:          "Password changed",
	audit.ActionAddPasskey:              "Passkey added",
	audit.ActionRemovePasskey:           "Passkey removed",
	audit.ActionResetPassword:           "Password reset from a mailed link",
	"users.create":                      "Account created",
	"clients.create":                    "App registered",
	"clients.delete":                    "App deleted",
	"clients.set_admin":                 "Admin service account changed",
	"clients.register":                  "App registered through the registration API",
	"clients.update":                    "App updated through the registration API",
	"clients.registration_token":        "Registration token made",
	"keys.rotate":                       "Signing key added",
}

// activityOf describes e as seen on the page of user, by administrator adm.
func activityOf(e audit.Entry, user, adm users.User, now time.Time) activityView {
	v := activityView{When: pages.Ago(now, e.At), WhenISO: iso(e.At), By: actorText(e.Actor, user, adm), Action: e.Action}
	d := e.Facts()
	v.What = actions[e.Action]
	switch {
	case e.Action == "sessions.revoke":
		v.What = "Ended " + pages.Plural(d.Sessions, "session") + ": " + reasonText(d.Reason)
	case e.Action == "users.set_password" && d.Temporary != nil && *d.Temporary:
		v.What = "Temporary password set"
	case e.Action == "users.set_admin" && d.Admin != nil:
		v.What = map[bool]string{true: "Made an administrator", false: "Administrator role removed"}[*d.Admin]
	case e.Action == "users.require_mfa" && d.Require != nil:
		v.What = map[bool]string{true: "Two-factor authentication required", false: "Two-factor requirement lifted"}[*d.Require]
	case v.What == "":
		v.What = e.Action
	}
	// What an administrator did to something else (another user, a
	// notification) says what it was done to.
	if e.Target != user.ID && e.Target != "" && e.Action != "sessions.revoke" {
		v.What += " (" + e.Target + ")"
	}
	return v
}

// actorText names who acted: the administrator looking, the user of the
// page, another administrator, the command line or the provider itself.
func actorText(actor string, user, adm users.User) string {
	switch {
	case actor == audit.Admin(adm.ID):
		return "you"
	case actor == audit.User(user.ID):
		return "the user"
	case actor == audit.Admin(user.ID):
		return "the user, as administrator"
	case strings.HasPrefix(actor, "admin:"):
		return "administrator " + strings.TrimPrefix(actor, "admin:")
	case strings.HasPrefix(actor, "client:"):
		return "admin service account " + strings.TrimPrefix(actor, "client:")
	case actor == audit.CLI:
		return "the command line"
	case actor == audit.System:
		return "the provider"
	}
	return actor
}
