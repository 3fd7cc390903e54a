package users

// Exported to the users_test package only.
var (
	CheckPolicy         = checkPolicy
	CommonPasswordsFile = commonPasswordsFile
)
