// Package passkey owns passkeys: WebAuthn credentials a person registers
// on their account and signs in with, as a second factor after the
// password or alone (passwordless, from the browser's autofill or a
// button), through github.com/go-webauthn/webauthn.
//
// It owns the tables passkey_credentials and passkey_challenges and these
// rules:
//   - the relying party is the issuer: its host is the RP id, its origin the
//     only origin accepted; an issuer whose host is an IP address cannot
//     have passkeys (WebAuthn has no RP id for one), and New says so;
//   - credentials are discoverable (resident key required) and made and
//     used with user verification (a PIN or biometric on the authenticator);
//     attestation is not asked for ("none");
//   - every ceremony has a challenge of its own, stored only as its SHA-256,
//     bound to what asked for it (a sign-in in progress or an account
//     session: the caller names it), valid for ChallengeTTL, and spent by
//     the first answer that names it, right or wrong, in a statement of its
//     own that commits whatever the caller's transaction does;
//   - a signature counter that does not move forward (for an authenticator
//     that keeps one) refuses the sign-in: the key may have been copied.
//
// It does not know about passwords, sessions or HTTP: callers check the
// password before a registration, make the session after an assertion
// (Assertion.Methods says what it proved), end other sessions after a
// change, and render the pages. Errors are sentinels with a sentence fit to
// show the person (Message).
package passkey
