package mail

// Kinds of "was this you?" alert (package alerts): a sign-in from a
// device the account had not used, and changes to the account's sign-in
// that its owner should know of. Each carries Facts (when, browser,
// address) and one link: "This wasn't me", or, where nothing is left to
// end, the password reset.
const (
	KindNewDevice       = "alert_new_device"
	KindPasswordChanged = "alert_password_changed"
	KindFactorsChanged  = "alert_factors_changed"
	KindAdminRevoked    = "alert_admin_revoked"
)

const wasntMe = "If this was you, there is nothing to do. If it was not, follow the link: it ends "

var alertKinds = map[string]copyOf{
	KindNewDevice: {
		subject: "New sign-in to your %s account",
		lead:    "Your %s account was just signed in to from a device it had not been used on before.",
		button:  "This wasn't me",
		footer:  wasntMe + "that session, tells every app it reached, and leads you to choose a new password.",
	},
	KindPasswordChanged: {
		subject: "Your %s password was changed",
		lead:    "The password of your %s account was changed.",
		button:  "This wasn't me",
		footer:  wasntMe + "every session of your account, tells every app, and leads you to choose a new password.",
	},
	KindFactorsChanged: {
		subject: "The sign-in of your %s account changed",
		lead:    "A second factor of your %s account (an authenticator app, recovery codes or a passkey) was changed.",
		button:  "This wasn't me",
		footer:  wasntMe + "every session of your account, tells every app, and leads you to choose a new password.",
	},
	KindAdminRevoked: {
		subject: "You were signed out of %s",
		lead:    "An administrator of %s ended every session of your account, on every device. Sign in again to go on.",
		button:  "Choose a new password",
		footer:  "If you think someone else knows your password, choose a new one with the link.",
	},
}

// copyFor is the words of kind.
func copyFor(kind string) (copyOf, bool) {
	if k, ok := kinds[kind]; ok {
		return k, true
	}
	k, ok := alertKinds[kind]
	return k, ok
}
