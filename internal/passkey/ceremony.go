package passkey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
)

// Options is what the browser passes to navigator.credentials.create or
// .get: {"publicKey": {...}} with binary fields base64url encoded, and
// "mediation" for the autofill's conditional request.
type Options = json.RawMessage

// BeginRegistration starts making a passkey for p, bound to boundTo (what
// asked: the caller names its sign-in or session, e.g. "session:<sid>").
// The caller has checked the password first. Passkeys p already has are
// excluded, so an authenticator that holds one says so instead of making a
// second. ErrTooMany when p has MaxPerUser.
func (s *Service) BeginRegistration(ctx context.Context, p Person, boundTo string) (Options, error) {
	u, err := s.loadUser(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(u.creds) >= MaxPerUser {
		return nil, ErrTooMany
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(u.creds))
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, session, err := s.web.BeginRegistration(u,
		webauthn.WithExclusions(exclude),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		// credProps makes the browser say whether the credential is
		// discoverable, which FinishRegistration checks.
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
		withTimeout(s.ttl()))
	if err != nil {
		return nil, fmt.Errorf("passkey: begin registration: %w", err)
	}
	return s.issue(ctx, purposeRegister, boundTo, p.ID, session, creation)
}

// FinishRegistration verifies the browser's answer to BeginRegistration
// (the JSON of the PublicKeyCredential) for p, bound to boundTo, and
// stores the new passkey under name, or, when name is empty, the name of
// its authenticator's model when known, else fallbackName (the browser).
// The challenge is spent whatever the outcome; the credential is written
// with the transaction in ctx, if any, so the caller's other writes of the
// change (ending other sessions, the audit record) stand or fall with it.
func (s *Service) FinishRegistration(ctx context.Context, p Person, boundTo string, response []byte, name, fallbackName string) (Passkey, error) {
	if name != "" {
		var err error
		if name, err = CheckName(name); err != nil {
			return Passkey{}, err
		}
	}
	parsed, err := parseCreation(response)
	if err != nil {
		return Passkey{}, err
	}
	ch, err := s.spend(ctx, parsed.Response.CollectedClientData.Challenge, purposeRegister, boundTo)
	if err != nil {
		return Passkey{}, err
	}
	if ch.userID != p.ID {
		return Passkey{}, ErrBinding
	}
	if err := s.precheck(parsed.Response.CollectedClientData, parsed.Response.AttestationObject.AuthData); err != nil {
		return Passkey{}, err
	}
	u, err := s.loadUser(ctx, p)
	if err != nil {
		return Passkey{}, err
	}
	cred, err := s.web.CreateCredential(u, ch.session, parsed)
	if err != nil {
		return Passkey{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if rk := cred.Extensions.RK; rk != nil && !*rk {
		// The browser says it made a credential that is not discoverable
		// (credProps): the autofill would never offer it. Refused rather
		// than stored as a passkey that quietly cannot sign in alone.
		return Passkey{}, fmt.Errorf("%w: the authenticator made a non-discoverable credential", ErrInvalid)
	}
	aaguid, _ := uuid.FromBytes(cred.Authenticator.AAGUID)
	if name == "" {
		name = modelName(aaguid)
	}
	if name == "" {
		name = fallbackName
	}
	if name, err = CheckName(name); err != nil {
		name = "Passkey"
	}
	transports := make([]string, 0, len(cred.Transport))
	for _, t := range cred.Transport {
		transports = append(transports, string(t))
	}
	pk := Passkey{
		UserID: p.ID, Name: name, AAGUID: aaguid.String(), Transports: transports,
		BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
		CreatedAt: s.now().UTC().Truncate(time.Microsecond),
	}
	if pk.ID, err = s.insert(ctx, pk, cred); err != nil {
		return Passkey{}, err
	}
	return pk, nil
}

// BeginAssertion starts a sign-in with one of userID's passkeys: the second
// factor after a password, or the step-up of a session that has one.
// ErrUnknownCredential when the user has none.
func (s *Service) BeginAssertion(ctx context.Context, userID, boundTo string) (Options, error) {
	u, err := s.loadUser(ctx, Person{ID: userID})
	if err != nil {
		return nil, err
	}
	if len(u.creds) == 0 {
		return nil, ErrUnknownCredential
	}
	assertion, session, err := s.web.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired),
		withLoginTimeout(s.ttl()))
	if err != nil {
		return nil, fmt.Errorf("passkey: begin assertion: %w", err)
	}
	return s.issue(ctx, purposeAssert, boundTo, userID, session, assertion)
}

// BeginSignIn starts a passwordless sign-in: the browser offers whichever
// passkey of this site the person picks. conditional asks for the
// autofill's quiet request (mediation "conditional") rather than a dialog.
func (s *Service) BeginSignIn(ctx context.Context, boundTo string, conditional bool) (Options, error) {
	mediation := protocol.MediationDefault
	if conditional {
		mediation = protocol.MediationConditional
	}
	assertion, session, err := s.web.BeginDiscoverableMediatedLogin(mediation,
		webauthn.WithUserVerification(protocol.VerificationRequired), withLoginTimeout(s.ttl()))
	if err != nil {
		return nil, fmt.Errorf("passkey: begin sign-in: %w", err)
	}
	return s.issue(ctx, purposeSignIn, boundTo, "", session, assertion)
}

// FinishAssertion verifies the browser's answer to BeginAssertion or
// BeginSignIn, bound to boundTo. With wantUserID set the passkey must be
// that account's (ErrWrongUser otherwise), whichever ceremony it answers:
// a step-up accepts a passwordless answer of the same person. It spends
// the challenge whatever the outcome, and on success records the use
// (counter, backup state, time), refusing a counter that did not move
// forward (ErrCounter).
func (s *Service) FinishAssertion(ctx context.Context, boundTo string, response []byte, wantUserID string) (Assertion, error) {
	parsed, err := parseAssertion(response)
	if err != nil {
		return Assertion{}, err
	}
	challenge := parsed.Response.CollectedClientData.Challenge
	if challenge == "" {
		return Assertion{}, ErrMalformed
	}
	// One round trip spends the challenge and reads the credential.
	taken, row, found, err := s.takeAssertion(ctx, hashChallenge(challenge), parsed.RawID)
	if err != nil {
		return Assertion{}, err
	}
	ch, err := s.check(taken, challenge, "", boundTo)
	if err != nil {
		return Assertion{}, err
	}
	if ch.purpose == purposeRegister {
		return Assertion{}, ErrBinding
	}
	if err := s.precheck(parsed.Response.CollectedClientData, parsed.Response.AuthenticatorData); err != nil {
		return Assertion{}, err
	}
	if !found {
		return Assertion{}, ErrUnknownCredential
	}
	if wantUserID != "" && row.userID != wantUserID {
		return Assertion{}, ErrWrongUser
	}
	if ch.userID != "" && row.userID != ch.userID {
		// A second factor's ceremony listed this user's passkeys only.
		return Assertion{}, ErrWrongUser
	}
	if row.disabled {
		return Assertion{}, ErrDisabled
	}
	handle, err := userHandle(row.userID)
	if err != nil {
		return Assertion{}, err
	}
	if h := parsed.Response.UserHandle; len(h) > 0 && !bytes.Equal(h, handle) {
		// The authenticator says the credential is another account's than
		// the one it is stored under.
		return Assertion{}, ErrWrongUser
	}
	u := &user{handle: handle, creds: []webauthn.Credential{row.cred}}
	var cred *webauthn.Credential
	if ch.purpose == purposeSignIn {
		_, cred, err = s.web.ValidatePasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			return u, nil
		}, ch.session, parsed)
	} else {
		// The ceremony listed the user's passkeys when it began; any of them
		// still registered is acceptable (one removed since is not found).
		ch.session.AllowedCredentialIDs = nil
		cred, err = s.web.ValidateLogin(u, ch.session, parsed)
	}
	if err != nil {
		return Assertion{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if cred.Authenticator.CloneWarning {
		return Assertion{}, ErrCounter
	}
	if err := s.used(ctx, row.id, row.cred.Authenticator.SignCount, cred.Authenticator.SignCount,
		parsed.Response.AuthenticatorData.Flags.HasBackupState()); err != nil {
		return Assertion{}, err
	}
	return Assertion{UserID: row.userID, PasskeyID: row.id, Name: row.name, Synced: cred.Flags.BackupEligible,
		UserVerified: parsed.Response.AuthenticatorData.Flags.HasUserVerified()}, nil
}

// issue stores the ceremony's state under its challenge's hash and returns
// the options for the browser.
func (s *Service) issue(ctx context.Context, purpose, boundTo, userID string, session *webauthn.SessionData, options any) (Options, error) {
	challenge := session.Challenge
	// The state keeps no copy of the challenge: the answer brings it back,
	// and its hash finds the row.
	state := *session
	state.Challenge = ""
	state.Expires = time.Time{} // checked against expires_at, by this package's clock
	ceremony, err := json.Marshal(state)
	if err != nil {
		return nil, fmt.Errorf("passkey: begin: %w", err)
	}
	if err := s.insertChallenge(ctx, challengeRow{hash: hashChallenge(challenge), purpose: purpose,
		binding: hashBinding(boundTo), userID: userID, ceremony: ceremony, expiresAt: s.now().Add(s.ttl())}); err != nil {
		return nil, err
	}
	out, err := json.Marshal(options)
	if err != nil {
		return nil, fmt.Errorf("passkey: begin: %w", err)
	}
	return out, nil
}

// waiting is a spent challenge's ceremony, ready to verify an answer.
type waiting struct {
	purpose string
	userID  string
	session webauthn.SessionData
}

// spend takes the challenge an answer names, so it can be answered only
// once, and checks it is of this ceremony (purpose, "" for either
// assertion), for boundTo, and not expired.
func (s *Service) spend(ctx context.Context, challenge, purpose, boundTo string) (waiting, error) {
	if challenge == "" {
		return waiting{}, ErrMalformed
	}
	row, err := s.takeChallenge(ctx, hashChallenge(challenge))
	if err != nil {
		return waiting{}, err
	}
	return s.check(row, challenge, purpose, boundTo)
}

// check is the rest of spend, for a challenge row already taken.
func (s *Service) check(row challengeRow, challenge, purpose, boundTo string) (waiting, error) {
	if !bytes.Equal(row.binding, hashBinding(boundTo)) {
		return waiting{}, ErrBinding
	}
	if purpose != "" && row.purpose != purpose {
		return waiting{}, ErrBinding
	}
	if !s.now().Before(row.expiresAt) {
		return waiting{}, ErrExpired
	}
	w := waiting{purpose: row.purpose, userID: row.userID}
	if err := json.Unmarshal(row.ceremony, &w.session); err != nil {
		return waiting{}, fmt.Errorf("passkey: stored ceremony: %w", err)
	}
	w.session.Challenge = challenge
	return w, nil
}

// precheck names the two mistakes a person can act on, which go-webauthn
// reports only as a failed verification: an answer made on another site
// (origin), or by a passkey of another site (RP id hash).
func (s *Service) precheck(client protocol.CollectedClientData, auth protocol.AuthenticatorData) error {
	if !strings.EqualFold(client.Origin, s.origin) {
		return fmt.Errorf("%w: %q", ErrOrigin, client.Origin)
	}
	want := sha256.Sum256([]byte(s.rpID))
	if !bytes.Equal(auth.RPIDHash, want[:]) {
		return ErrRelyingParty
	}
	if !auth.Flags.HasUserVerified() {
		return ErrNotVerified
	}
	return nil
}

func parseCreation(response []byte) (*protocol.ParsedCredentialCreationData, error) {
	if len(response) == 0 || len(response) > MaxResponseBytes {
		return nil, ErrMalformed
	}
	p, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return p, nil
}

func parseAssertion(response []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(response) == 0 || len(response) > MaxResponseBytes {
		return nil, ErrMalformed
	}
	p, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return p, nil
}

func hashChallenge(c string) []byte {
	h := sha256.Sum256([]byte("passkey-challenge:" + c))
	return h[:]
}

func hashBinding(b string) []byte {
	h := sha256.Sum256([]byte("passkey-binding:" + b))
	return h[:]
}

func withTimeout(d time.Duration) webauthn.RegistrationOption {
	return func(o *protocol.PublicKeyCredentialCreationOptions) error {
		o.Timeout = int(d.Milliseconds())
		return nil
	}
}

func withLoginTimeout(d time.Duration) webauthn.LoginOption {
	return func(o *protocol.PublicKeyCredentialRequestOptions) error {
		o.Timeout = int(d.Milliseconds())
		return nil
	}
}

// errorsAreVerdicts lists the errors a finish returns about the answer
// rather than about the server.
var verdicts = []error{ErrChallenge, ErrExpired, ErrBinding, ErrMalformed, ErrOrigin, ErrRelyingParty, ErrNotVerified,
	ErrUnknownCredential, ErrWrongUser, ErrCounter, ErrInvalid, ErrDisabled, ErrAlreadyRegistered, ErrTooMany,
	ErrNotFound, ErrInvalidName}

// IsVerdict reports whether err is about the person's answer or request
// (show Message), rather than a failure of the server (log it).
func IsVerdict(err error) bool {
	for _, v := range verdicts {
		if errors.Is(err, v) {
			return true
		}
	}
	return false
}
