package mail

// Kinds of message about an account's address (package verify).
const (
	// KindVerifyEmail asks the owner of a new account to confirm its
	// address.
	KindVerifyEmail = "verify_email"
	// KindConfirmEmailChange goes to the new address of a change asked
	// for on /account: the change happens when its link is confirmed.
	KindConfirmEmailChange = "confirm_email_change"
	// KindEmailChanged tells the old address that the account's address
	// changed; its link leads to the account page, with no token.
	KindEmailChanged = "email_changed"
)

func init() {
	kinds[KindVerifyEmail] = copyOf{
		subject: "Confirm your %s address",
		lead:    "An account on %s was made for this address. Follow the link and confirm that the address is yours.",
		button:  "Confirm my address",
		footer:  "If you do not expect this account, ignore this mail: the address stays unconfirmed.",
	}
	kinds[KindConfirmEmailChange] = copyOf{
		subject: "Confirm the new address of your %s account",
		lead:    "Someone, probably you, asked to move a %s account to this address. Follow the link and confirm it; until then the account keeps its old address.",
		button:  "Confirm the new address",
		footer:  "If you did not ask for this, ignore this mail: nothing changes.",
	}
	kinds[KindEmailChanged] = copyOf{
		subject: "The address of your %s account changed",
		lead:    "The address your %s account signs in with is no longer this one: a new address was confirmed. Mail about the account now goes there.",
		button:  "Open your account",
		footer:  "If you did not do this, reset your password or ask an administrator at once.",
	}
}

// KindConfirmSignup asks whoever signed up with an address to confirm it:
// the account is made when they do.
const KindConfirmSignup = "confirm_signup"

func init() {
	kinds[KindConfirmSignup] = copyOf{
		subject: "Confirm your new %s account",
		lead:    "Someone, probably you, signed up for a %s account with this address. Follow the link and confirm to create it.",
		button:  "Create my account",
		footer:  "If you did not sign up, ignore this mail: no account is made.",
	}
}
