package passkey

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors. Each is returned as is or wrapped with detail for the log;
// Message says it to the person.
var (
	// ErrUnavailable: the issuer's host is an IP address, for which
	// WebAuthn has no relying party id.
	ErrUnavailable = errors.New("passkey: passkeys need an issuer with a host name, not an IP address")
	// ErrChallenge: the answer names no challenge this server has
	// waiting: it was already answered, or expired and was cleaned up, or
	// never issued.
	ErrChallenge = errors.New("passkey: no such ceremony waiting (already answered, or expired)")
	// ErrExpired: the answer came after ChallengeTTL.
	ErrExpired = errors.New("passkey: the ceremony took too long")
	// ErrBinding: the challenge was issued to another sign-in or session.
	ErrBinding = errors.New("passkey: the challenge belongs to another sign-in or session")
	// ErrMalformed: the answer is not a WebAuthn response at all.
	ErrMalformed = errors.New("passkey: malformed response")
	// ErrOrigin: the browser made the answer on another site.
	ErrOrigin = errors.New("passkey: the response was made for another origin")
	// ErrRelyingParty: the authenticator signed for another RP id.
	ErrRelyingParty = errors.New("passkey: the response was made for another relying party id")
	// ErrNotVerified: the authenticator did not verify the person (no PIN
	// or biometric), which every passkey ceremony here requires.
	ErrNotVerified = errors.New("passkey: the authenticator did not verify the user")
	// ErrUnknownCredential: no account here has this credential.
	ErrUnknownCredential = errors.New("passkey: unknown credential")
	// ErrWrongUser: the credential belongs to another account than the
	// one signing in.
	ErrWrongUser = errors.New("passkey: the credential belongs to another account")
	// ErrCounter: the signature counter did not move forward.
	ErrCounter = errors.New("passkey: the signature counter went backwards (a copied key?)")
	// ErrInvalid: the answer failed verification for another reason (a
	// bad signature, a damaged or unexpected structure).
	ErrInvalid = errors.New("passkey: the response did not verify")
	// ErrDisabled: the credential's account is disabled.
	ErrDisabled = errors.New("passkey: the account is disabled")
	// ErrAlreadyRegistered: this authenticator already holds a passkey of
	// the account.
	ErrAlreadyRegistered = errors.New("passkey: this passkey is already registered")
	// ErrTooMany: the account has MaxPerUser passkeys.
	ErrTooMany = errors.New("passkey: too many passkeys")
	// ErrNotFound: no passkey of the account has that id.
	ErrNotFound = errors.New("passkey: no such passkey")
	// ErrInvalidName: a name that is empty, too long or has control
	// characters.
	ErrInvalidName = errors.New("passkey: invalid name")
)

// Message says err to the person, in a sentence that says what to do;
// "" for an error that is not one of this package's verdicts.
func Message(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return "The passkey request took too long and expired. Try again."
	case errors.Is(err, ErrChallenge), errors.Is(err, ErrBinding):
		return "This passkey request is no longer valid: it expired or was already used. Try again."
	case errors.Is(err, ErrMalformed):
		return "Your browser sent no usable passkey response. Try again; passkeys need JavaScript and a browser that supports them."
	case errors.Is(err, ErrOrigin):
		return "The passkey response was made for another website. Open this sign-in page at its own address and try again."
	case errors.Is(err, ErrRelyingParty):
		return "The passkey answered for another website than this one. Use a passkey made for this site."
	case errors.Is(err, ErrNotVerified):
		return "Your authenticator did not check that it is you (with a PIN, fingerprint or face). Passkeys here need that; try again and unlock it when asked."
	case errors.Is(err, ErrUnknownCredential):
		return "That passkey is not registered here. It may have been removed; sign in another way."
	case errors.Is(err, ErrWrongUser):
		return "That passkey belongs to another account. Use a passkey of the account you are signing in to."
	case errors.Is(err, ErrCounter):
		return "That passkey was refused: its signature counter went backwards, which can mean the key was copied. Sign in another way and tell your administrator."
	case errors.Is(err, ErrInvalid):
		return "The passkey response could not be verified. Try again, or sign in another way."
	case errors.Is(err, ErrDisabled):
		return "This account is disabled. Contact your administrator."
	case errors.Is(err, ErrAlreadyRegistered):
		return "This authenticator already holds a passkey for your account."
	case errors.Is(err, ErrTooMany):
		return fmt.Sprintf("You already have %d passkeys, the most an account may have. Remove one first.", MaxPerUser)
	case errors.Is(err, ErrNotFound):
		return "That passkey is not one of yours (it may already be removed)."
	case errors.Is(err, ErrInvalidName):
		return fmt.Sprintf("A passkey's name is 1 to %d characters, without line breaks.", MaxNameLength)
	case errors.Is(err, ErrUnavailable):
		return "Passkeys are not available on this server."
	}
	return ""
}

// Limits on what a person or a browser can make the server store or parse.
const (
	MaxPerUser    = 20
	MaxNameLength = 64
	// MaxResponseBytes bounds a ceremony's answer; real ones are a few KiB.
	MaxResponseBytes = 64 << 10
	// DefaultChallengeTTL is how long a ceremony may take: what browsers
	// get as their timeout, and how long the challenge is kept.
	DefaultChallengeTTL = 5 * time.Minute
)

// Purposes of a challenge: the answer must be to the ceremony begun.
const (
	purposeRegister = "register"
	purposeAssert   = "assert" // the user is known: a second factor
	purposeSignIn   = "sign-in"
)

// Service runs the ceremonies and keeps the credentials. It is safe for
// concurrent use, on any number of instances sharing one database. One
// made by New runs ceremonies; one with only Pool set (the command line)
// can list, rename and remove passkeys.
type Service struct {
	Pool *pgxpool.Pool
	// Now is the clock challenges expire by; nil means time.Now.
	Now func() time.Time
	// ChallengeTTL is DefaultChallengeTTL when zero.
	ChallengeTTL time.Duration

	rpID, origin string
	web          *webauthn.WebAuthn
}

// New makes the relying party of issuer (an absolute http(s) URL) named
// rpName in authenticators' prompts. ErrUnavailable when the issuer's host
// is an IP address.
func New(pool *pgxpool.Pool, issuer, rpName string, now func() time.Time) (*Service, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("passkey: issuer %q is not an absolute http(s) URL", issuer)
	}
	if net.ParseIP(u.Hostname()) != nil {
		return nil, ErrUnavailable
	}
	s := &Service{Pool: pool, Now: now, rpID: u.Hostname(), origin: u.Scheme + "://" + u.Host}
	s.web, err = webauthn.New(&webauthn.Config{
		RPID:          s.rpID,
		RPDisplayName: rpName,
		RPOrigins:     []string{s.origin},
		// Not asked: an attestation would identify the model (privacy), and
		// nothing here decides by it.
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			// Required, and said in both the Level 1 and Level 2 fields:
			// browsers that read only the old one would otherwise make a
			// non-discoverable credential that the autofill never lists.
			RequireResidentKey: protocol.ResidentKeyRequired(),
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			UserVerification:   protocol.VerificationRequired,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	return s, nil
}

// RPID is the relying party id: the issuer's host.
func (s *Service) RPID() string { return s.rpID }

// Origin is the one origin answers may come from: the issuer's.
func (s *Service) Origin() string { return s.origin }

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) ttl() time.Duration {
	if s.ChallengeTTL > 0 {
		return s.ChallengeTTL
	}
	return DefaultChallengeTTL
}

// Person is the account a passkey is made for.
type Person struct {
	ID    string // the user id; its 16 bytes are the WebAuthn user handle
	Email string // the name authenticators list the passkey under
	Name  string // display name; Email when empty
}

// Passkey is a registered credential as its owner and administrators see it.
type Passkey struct {
	ID             string     `json:"id"`
	UserID         string     `json:"user_id"`
	Name           string     `json:"name"`
	AAGUID         string     `json:"aaguid"`
	Transports     []string   `json:"transports"`
	BackupEligible bool       `json:"backup_eligible"` // a synced passkey (it can leave the device)
	BackupState    bool       `json:"backup_state"`    // it is backed up now
	CreatedAt      time.Time  `json:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty"`
}

// Synced reports whether the passkey can be copied to the owner's other
// devices (a password manager's or a platform's), as against one bound
// to this authenticator.
func (p Passkey) Synced() bool { return p.BackupEligible }

// Assertion is a passkey sign-in that verified.
type Assertion struct {
	UserID    string
	PasskeyID string
	Name      string
	// Synced: backup eligible, so the key is held by software that syncs
	// it (RFC 8176 "swk"); otherwise it never leaves the authenticator
	// ("hwk").
	Synced bool
	// UserVerified: the authenticator checked a PIN or biometric (always,
	// here: it is required).
	UserVerified bool
}

// Authentication method references (RFC 8176) a passkey proves.
const (
	amrHardwareKey = "hwk"
	amrSoftwareKey = "swk"
	amrPIN         = "pin"
	amrUser        = "user"
)

// Methods returns the RFC 8176 methods the assertion proved: "hwk" for a
// device-bound key or "swk" for a synced one, and "pin" when the
// authenticator verified the person ("user" when it only saw them
// present). WebAuthn does not say whether a PIN or a biometric unlocked
// the key; "pin" is the method the authenticator always has.
func (a Assertion) Methods() []string {
	key := amrHardwareKey
	if a.Synced {
		key = amrSoftwareKey
	}
	if a.UserVerified {
		return []string{key, amrPIN}
	}
	return []string{key, amrUser}
}

// userHandle is the WebAuthn user handle of a user id: the UUID's 16 bytes,
// which name the account without saying anything about the person.
func userHandle(userID string) ([]byte, error) {
	id, err := uuid.Parse(userID)
	if err != nil || len(userID) != 36 {
		return nil, fmt.Errorf("passkey: malformed user id %q", userID)
	}
	return id[:], nil
}

// CheckName validates a passkey name and returns it trimmed.
func CheckName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > MaxNameLength || !utf8.ValidString(name) {
		return "", ErrInvalidName
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", ErrInvalidName
		}
	}
	return name, nil
}

// user adapts a Person and their credentials to go-webauthn's User.
type user struct {
	handle      []byte
	name, email string
	creds       []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return u.email }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }
