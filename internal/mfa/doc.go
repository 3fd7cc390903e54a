// Package mfa owns the second factor: TOTP enrollment and verification and
// the recovery codes that stand in for a lost authenticator.
//
// It owns the tables totp_credentials and recovery_codes and the throttle key
// "totp-user:<user id>". It decides whether a code is right; it does not know
// about passwords, sessions or HTTP. Callers check the password before
// Disable and RegenerateRecoveryCodes, end sessions after Disable, and render
// the pages.
//
// The rules it enforces, each in PostgreSQL so every instance agrees:
//   - a secret (SHA-1, 6 digits, 30 s: what every authenticator app accepts)
//     is active only after the user confirms one valid code;
//   - secrets are sealed at rest with a secrets.Box bound to the user id;
//   - a code is accepted for the current time step or one either side, and
//     each step at most once per user (a conditional UPDATE on last_step);
//   - guesses for one user are judged one at a time, under a row lock, so
//     parallel guesses cannot slip past the failure throttle;
//   - recovery codes are stored hashed and used at most once.
package mfa
