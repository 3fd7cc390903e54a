// Package ssf owns the provider's side of the OpenID Shared Signals
// Framework 1.0 as a transmitter: Security Event Tokens (RFC 8417) carrying
// CAEP and RISC events about the provider's users, the transmitter
// configuration at /.well-known/ssf-configuration, the streams receivers
// manage through the SSF management API, and the delivery of events to
// them by push (RFC 8935) and poll (RFC 8936).
//
// Receivers are OAuth clients of this provider holding the ssf scope; each
// has at most one stream. Events are queued in the transaction of the change
// that caused them (package outbox), one message per stream, and signed
// when they are delivered, with the jti and iat fixed at queueing so a
// receiver can recognise a retried event.
package ssf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/idp/idp/internal/sso/keys"
)

// TokenType is the typ header of a Security Event Token (RFC 8417 §2.3),
// which keeps a SET from being taken for an ID token or an access token.
const TokenType = "secevent+jwt"

// Event types this transmitter sends.
const (
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"

	EventAccountDisabled                 = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	EventAccountEnabled                  = "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
	EventAccountPurged                   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	EventAccountCredentialChangeRequired = "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required"

	// EventVerification answers a receiver's verification request (SSF
	// §8.1.4); it is always delivered, whatever the stream asked for.
	EventVerification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	// EventStreamUpdated tells the receiver the transmitter changed the
	// stream's status (SSF §8.1.5); like verification, it is always
	// delivered, and even to a paused or disabled stream, as it is about
	// the stream.
	EventStreamUpdated = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// EventsSupported are the event types a stream may request, in the order
// the stream configuration lists them.
func EventsSupported() []string {
	return []string{EventSessionRevoked, EventCredentialChange, EventAccountDisabled, EventAccountEnabled,
		EventAccountPurged, EventAccountCredentialChangeRequired}
}

// Subject identifier formats (RFC 9493) this transmitter reads and writes.
const (
	FormatEmail  = "email"
	FormatIssSub = "iss_sub"
	FormatOpaque = "opaque"
)

// ErrInvalidSubject means a subject identifier is not one of the formats
// above, or lacks what its format requires.
var ErrInvalidSubject = errors.New("ssf: invalid subject identifier")

// Subject is a subject identifier (RFC 9493 §3): the sub_id of a SET, and
// what receivers add to and remove from a stream.
type Subject struct {
	Format string `json:"format"`
	Email  string `json:"email,omitempty"`
	Iss    string `json:"iss,omitempty"`
	Sub    string `json:"sub,omitempty"`
	ID     string `json:"id,omitempty"`
}

// Validate checks s has exactly the members its format needs.
func (s Subject) Validate() error {
	var ok bool
	switch s.Format {
	case FormatEmail:
		ok = s.Email != "" && strings.Contains(s.Email, "@") && s.Iss == "" && s.Sub == "" && s.ID == ""
	case FormatIssSub:
		ok = s.Iss != "" && s.Sub != "" && s.Email == "" && s.ID == ""
	case FormatOpaque:
		ok = s.ID != "" && s.Email == "" && s.Iss == "" && s.Sub == ""
	default:
		return fmt.Errorf("%w: format %q is not one of email, iss_sub, opaque", ErrInvalidSubject, s.Format)
	}
	if !ok {
		return fmt.Errorf("%w: format %s needs %s and nothing else", ErrInvalidSubject, s.Format, map[string]string{
			FormatEmail: "email", FormatIssSub: "iss and sub", FormatOpaque: "id"}[s.Format])
	}
	return nil
}

// Email is the email subject identifier of address.
func Email(address string) Subject { return Subject{Format: FormatEmail, Email: address} }

// IssSub is the issuer-and-subject identifier of a user of issuer: sub is
// the user's id, the sub of their ID tokens.
func IssSub(issuer, sub string) Subject { return Subject{Format: FormatIssSub, Iss: issuer, Sub: sub} }

// Opaque is an opaque identifier; SSF names a stream by one (its stream_id)
// in the events about the stream itself.
func Opaque(id string) Subject { return Subject{Format: FormatOpaque, ID: id} }

// SET is one Security Event Token before it is signed: the claims that
// stay the same on every delivery attempt. It is what an outbox message
// carries.
type SET struct {
	JTI      string                    `json:"jti"`
	IssuedAt int64                     `json:"iat"`
	Subject  Subject                   `json:"sub_id"`
	Events   map[string]map[string]any `json:"events"`
	// TxnID ties the SETs one change caused (RFC 8417 §2.2 txn): the
	// session-revoked events of one revoke-all share it.
	TxnID string `json:"txn,omitempty"`
}

// setClaims is the signed claim set: SET plus iss and aud.
type setClaims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	SET
}

// ErrInvalidSET means Sign was asked for a token the specs do not allow.
var ErrInvalidSET = errors.New("ssf: invalid security event token")

// Sign signs set for audience (the receiver) as issuer with the current
// key of alg. There is no exp: a SET records that something happened
// (RFC 8417 §2.2), and an event held for a paused stream is no less true
// days later; receivers judge freshness by iat and recognise repeats by
// jti.
func (set SET) Sign(ks *keys.Set, alg, issuer, audience string) (string, error) {
	switch {
	case issuer == "" || audience == "":
		return "", fmt.Errorf("%w: issuer and audience are required", ErrInvalidSET)
	case set.JTI == "" || set.IssuedAt <= 0:
		return "", fmt.Errorf("%w: jti and iat are required", ErrInvalidSET)
	case len(set.Events) == 0:
		return "", fmt.Errorf("%w: no event", ErrInvalidSET)
	}
	if err := set.Subject.Validate(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSET, err)
	}
	kid, key, err := ks.Signer(alg)
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: cryptosigner.Opaque(key), KeyID: kid}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	// encoding/json, not go-jose's own: the events keep their numbers as
	// queued (json.Number), which go-jose's fork would write as strings.
	payload, err := json.Marshal(setClaims{Issuer: issuer, Audience: audience, SET: set})
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	return token, nil
}

// Initiating entities of a CAEP event (CAEP 1.0 §2).
const (
	InitiatorAdmin  = "admin"
	InitiatorUser   = "user"
	InitiatorPolicy = "policy"
	InitiatorSystem = "system"
)

// caepMeta is the metadata every CAEP event carries: when the change
// happened, who caused it, and, when there is one, why in words an
// administrator reads.
func caepMeta(at time.Time, initiator, reasonAdmin string) map[string]any {
	m := map[string]any{"event_timestamp": at.Unix()}
	if initiator != "" {
		m["initiating_entity"] = initiator
	}
	if reasonAdmin != "" {
		m["reason_admin"] = map[string]string{"en": reasonAdmin}
	}
	return m
}

// SessionRevoked is CAEP's session-revoked event (CAEP 1.0 §3.1).
func SessionRevoked(at time.Time, initiator, reasonAdmin string) map[string]map[string]any {
	return map[string]map[string]any{EventSessionRevoked: caepMeta(at, initiator, reasonAdmin)}
}

// Credential types and change types of a credential-change event (CAEP
// 1.0 §3.3) that this provider's factors map to.
const (
	CredentialPassword      = "password"
	CredentialApp           = "app"            // a TOTP authenticator app
	CredentialFIDO2Platform = "fido2-platform" // a passkey
	CredentialFIDO2Roaming  = "fido2-roaming"
	CredentialRecoveryCodes = "pin" // single-use codes the person keeps: CAEP's nearest kind

	ChangeCreate = "create"
	ChangeRevoke = "revoke"
	ChangeUpdate = "update"
	ChangeDelete = "delete"
)

// CredentialChange is CAEP's credential-change event.
func CredentialChange(at time.Time, initiator, credentialType, changeType string) map[string]map[string]any {
	m := caepMeta(at, initiator, "")
	m["credential_type"] = credentialType
	m["change_type"] = changeType
	return map[string]map[string]any{EventCredentialChange: m}
}

// AccountDisabled is RISC's account-disabled event (RISC 1.0 §2.3);
// reason, when set, is "hijacking" or "bulk-account".
func AccountDisabled(reason string) map[string]map[string]any {
	m := map[string]any{}
	if reason != "" {
		m["reason"] = reason
	}
	return map[string]map[string]any{EventAccountDisabled: m}
}

// AccountEnabled is RISC's account-enabled event.
func AccountEnabled() map[string]map[string]any {
	return map[string]map[string]any{EventAccountEnabled: {}}
}

// AccountPurged is RISC's account-purged event: the account is deleted.
func AccountPurged() map[string]map[string]any {
	return map[string]map[string]any{EventAccountPurged: {}}
}

// AccountCredentialChangeRequired is RISC's
// account-credential-change-required event: the person must choose a new
// password (an administrator set a temporary one).
func AccountCredentialChangeRequired() map[string]map[string]any {
	return map[string]map[string]any{EventAccountCredentialChangeRequired: {}}
}

// Verification is SSF's verification event, echoing the receiver's state.
func Verification(state string) map[string]map[string]any {
	m := map[string]any{}
	if state != "" {
		m["state"] = state
	}
	return map[string]map[string]any{EventVerification: m}
}

// StreamUpdated is SSF's stream-updated event: the stream's new status
// and, when given, why.
func StreamUpdated(status, reason string) map[string]map[string]any {
	m := map[string]any{"status": status}
	if reason != "" {
		m["reason"] = reason
	}
	return map[string]map[string]any{EventStreamUpdated: m}
}
