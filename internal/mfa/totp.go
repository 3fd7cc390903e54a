package mfa

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/throttle"
)

// Errors callers map to messages. Each is returned as is (not wrapped), so
// errors.Is and == both work; ErrMalformedCode comes wrapped with a sentence
// saying what a code looks like, fit to show the user.
var (
	ErrInvalidCode     = errors.New("mfa: wrong code")
	ErrReplayed        = errors.New("mfa: this code was already used; wait for the next one")
	ErrNotEnrolled     = errors.New("mfa: two-factor authentication is not set up")
	ErrAlreadyEnrolled = errors.New("mfa: two-factor authentication is already set up")
	ErrMalformedCode   = errors.New("mfa: malformed code")
)

// ThrottledError means too many wrong codes were entered for the user
// lately; no code, right or wrong, is looked at until RetryAfter passes.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("mfa: too many wrong codes; try again in %s", e.RetryAfter.Round(time.Second))
}

// Method names Verify returns; they fit an amr claim ("otp") and tell the
// caller when to show how many recovery codes are left ("recovery").
const (
	MethodOTP      = "otp"
	MethodRecovery = "recovery"
)

// The parameters every authenticator app accepts; the otpauth URI states
// them anyway for the apps that read it.
const (
	totpPeriod     = 30
	totpDigits     = 6
	totpSecretSize = 20 // bytes: the HMAC-SHA1 block RFC 4226 recommends
	// totpSkew is how many steps either side of now are accepted, for
	// clocks that drift and for the seconds a person takes to type.
	totpSkew = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// SecretPurpose is the purpose the box sealing TOTP secrets is derived
// for: secrets.New(serverSecret, SecretPurpose). Changing it makes every
// stored secret unreadable.
const SecretPurpose = "totp"

// TOTP enrolls and verifies time-based one-time passwords and recovery
// codes. Its methods are safe for concurrent use, on any number of
// instances sharing one database.
//
// Verify and Confirm record wrong guesses in the same transaction as their
// verdict and commit it although they return an error: call them outside a
// transaction, or in one the caller commits even on ErrInvalidCode, or the
// failure count is lost.
type TOTP struct {
	Pool *pgxpool.Pool
	// Box seals secrets at rest: secrets.New(serverSecret, SecretPurpose).
	Box *secrets.Box
	// Issuer names this service in the authenticator app.
	Issuer string
	// Limiter counts wrong codes under "totp-user:<id>"; nil means
	// throttle.Default on Pool with Now.
	Limiter *throttle.Limiter
	// Now is the clock codes are checked against; nil means time.Now.
	Now func() time.Time
}

// Enrollment is what the enrollment page shows. The secret, the link and
// the QR code all carry the secret: serve them only to the user enrolling,
// never cache them.
type Enrollment struct {
	// Secret is the base32 secret for typing into the app by hand.
	Secret string
	// URI is the otpauth:// link that phones open in their app.
	URI string
}

// QRPNG renders a PNG of a QR code holding URI. It costs milliseconds of
// CPU, so only the image's own request renders it, not the page around it.
func (e Enrollment) QRPNG() ([]byte, error) {
	png, err := qrPNG(e.URI)
	if err != nil {
		return nil, fmt.Errorf("mfa: qr code: %w", err)
	}
	return png, nil
}

func (m *TOTP) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *TOTP) limiter() *throttle.Limiter {
	if m.Limiter != nil {
		return m.Limiter
	}
	l := throttle.Default(m.Pool)
	l.Now = m.now
	return l
}

func throttleKey(userID string) string { return "totp-user:" + userID }

// An enrollment belongs to its owner: the sign-in in progress or the SSO
// session that began it (LoginFlowOwner, SessionOwner). Only the owner is
// shown the pending secret and may confirm it, so a secret is never shown
// to two sessions, and whoever holds another session of the person cannot
// take over an enrollment they did not start.

// SessionOwner names the enrollment of an SSO session (by its sid).
func SessionOwner(sid string) string { return "session:" + sid }

// LoginFlowOwner names the enrollment of a sign-in in progress (by the
// hash of its flow id).
func LoginFlowOwner(flowIDHash []byte) string { return fmt.Sprintf("login-flow:%x", flowIDHash) }

func ownerHash(owner string) []byte {
	h := sha256.Sum256([]byte("idp mfa enrollment owner\x00" + owner))
	return h[:]
}

// Begin makes a new secret for userID and stores it unconfirmed, for owner,
// replacing any earlier unconfirmed one, whoever began it (so an abandoned
// enrollment never lingers as a second valid secret). It fails with
// ErrAlreadyEnrolled when 2FA is on: disable it first. accountName (usually
// the email) labels the entry in the app.
func (m *TOTP) Begin(ctx context.Context, userID, owner, accountName string) (Enrollment, error) {
	uid, err := canonicalUserID("begin", userID)
	if err != nil {
		return Enrollment{}, err
	}
	raw := make([]byte, totpSecretSize)
	rand.Read(raw)
	e, err := m.enrollment(accountName, raw)
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: begin: %w", err)
	}
	sealed := m.Box.Seal([]byte(e.Secret), []byte(uid))
	// One statement decides: a confirmed row is left alone and reported,
	// so two tabs enrolling at once cannot overwrite an active secret.
	tag, err := db.Conn(ctx, m.Pool).Exec(ctx, `
		INSERT INTO totp_credentials AS c (user_id, secret_encrypted, created_at, enrollment_owner)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE
			SET secret_encrypted = EXCLUDED.secret_encrypted, last_step = 0, created_at = EXCLUDED.created_at,
				enrollment_owner = EXCLUDED.enrollment_owner
			WHERE c.confirmed_at IS NULL`,
		uid, sealed, m.now(), ownerHash(owner))
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: begin: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Enrollment{}, ErrAlreadyEnrolled
	}
	return e, nil
}

// Pending shows owner's unconfirmed enrollment again (a page reload, the
// QR image request) without making a new secret. ErrNotEnrolled means
// owner has none (another owner's is never shown); ErrAlreadyEnrolled
// means 2FA is on, and an active secret is never shown again.
func (m *TOTP) Pending(ctx context.Context, userID, owner, accountName string) (Enrollment, error) {
	uid, err := canonicalUserID("pending", userID)
	if err != nil {
		return Enrollment{}, err
	}
	var sealed []byte
	var confirmed, owned bool
	err = db.Conn(ctx, m.Pool).QueryRow(ctx,
		`SELECT secret_encrypted, confirmed_at IS NOT NULL, enrollment_owner IS NOT DISTINCT FROM $2
		FROM totp_credentials WHERE user_id = $1`,
		uid, ownerHash(owner)).Scan(&sealed, &confirmed, &owned)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !confirmed && !owned) {
		return Enrollment{}, ErrNotEnrolled
	}
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: pending: %w", err)
	}
	if confirmed {
		return Enrollment{}, ErrAlreadyEnrolled
	}
	secret, err := m.open(sealed, uid)
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: pending: %w", err)
	}
	raw, err := b32.DecodeString(secret)
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: pending: stored secret: %w", err)
	}
	e, err := m.enrollment(accountName, raw)
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: pending: %w", err)
	}
	return e, nil
}

// enrollment builds the URI for a raw secret. pquerna/otp writes
// the otpauth URI, so its format is the one apps are tested against.
func (m *TOTP) enrollment(accountName string, raw []byte) (Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      m.Issuer,
		AccountName: accountName,
		Period:      totpPeriod,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
		Secret:      raw,
	})
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{Secret: key.Secret(), URI: key.URL()}, nil
}

// Confirm activates owner's pending secret when code is valid for it, and
// returns the first set of recovery codes, to be shown once. The
// confirming code's time step counts as used, like any accepted code.
// ErrNotEnrolled: owner has no pending secret (another owner began one
// since, or none was begun).
func (m *TOTP) Confirm(ctx context.Context, userID, owner, code string) (recoveryCodes []string, err error) {
	uid, err := canonicalUserID("confirm", userID)
	if err != nil {
		return nil, err
	}
	k, c, err := parseCode(code)
	if err != nil || k != kindTOTP {
		return nil, ErrMalformedAppCode
	}
	err = m.attempt(ctx, uid, false, func(ctx context.Context, u *db.Unit, cred credential) (error, error) {
		if !bytes.Equal(cred.owner, ownerHash(owner)) {
			return ErrNotEnrolled, nil
		}
		step, ok, err := m.match(cred, uid, c)
		if err != nil || !ok {
			return ErrInvalidCode, err
		}
		if step <= cred.lastStep {
			return ErrReplayed, nil
		}
		u.Queue(`
			UPDATE totp_credentials SET confirmed_at = $3, last_step = $2
			WHERE user_id = $1 AND confirmed_at IS NULL AND last_step < $2`,
			uid, step, m.now()).Tag(stepRecorded)
		recoveryCodes = m.queueRecoveryCodes(u, uid)
		return nil, nil
	})
	if err != nil {
		return nil, wrap("confirm", err)
	}
	return recoveryCodes, nil
}

// Enabled reports whether the user has a confirmed second factor.
func (m *TOTP) Enabled(ctx context.Context, userID string) (bool, error) {
	uid, err := canonicalUserID("enabled", userID)
	if err != nil {
		return false, err
	}
	var on bool
	err = db.Conn(ctx, m.Pool).QueryRow(ctx, `SELECT `+EnabledSQL("$1"), uid).Scan(&on)
	if err != nil {
		return false, fmt.Errorf("mfa: enabled: %w", err)
	}
	return on, nil
}

// EnabledSQL is Enabled as a boolean SQL expression on userID, a column or
// parameter of the caller's statement ("u.id", "$1"), for a caller that
// needs the answer in a statement it makes anyway: the password step of a
// sign-in reads it with the password hash, to know which step comes next.
func EnabledSQL(userID string) string {
	return `EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = ` + userID + ` AND confirmed_at IS NOT NULL)`
}

// Verify checks a code from the user's app, or a recovery code, and
// returns which it was (MethodOTP or MethodRecovery). A TOTP code's time
// step is spent, a recovery code is spent. Errors: ErrMalformedCode (nothing
// looked at, nothing counted), *ThrottledError, ErrInvalidCode, ErrReplayed,
// ErrNotEnrolled.
func (m *TOTP) Verify(ctx context.Context, userID, code string) (method string, err error) {
	uid, err := canonicalUserID("verify", userID)
	if err != nil {
		return "", err
	}
	k, c, err := parseCode(code)
	if err != nil {
		return "", err
	}
	err = m.attempt(ctx, uid, true, func(ctx context.Context, u *db.Unit, cred credential) (error, error) {
		if k == kindRecovery {
			return m.useRecoveryCode(ctx, u, uid, c)
		}
		step, ok, err := m.match(cred, uid, c)
		if err != nil || !ok {
			return ErrInvalidCode, err
		}
		// The row lock makes cred.lastStep the last word, so the replay rule
		// is decided here. The UPDATE states it again in its WHERE clause:
		// PostgreSQL records a step only if it is newer than every step
		// accepted before, lock or no lock, and stepRecorded fails the guess
		// when it did not.
		if step <= cred.lastStep {
			return ErrReplayed, nil
		}
		u.Queue(`
			UPDATE totp_credentials SET last_step = $2
			WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2`,
			uid, step).Tag(stepRecorded)
		return nil, nil
	})
	if err != nil {
		return "", wrap("verify", err)
	}
	if k == kindRecovery {
		return MethodRecovery, nil
	}
	return MethodOTP, nil
}

// credential is a totp_credentials row as attempt reads it.
type credential struct {
	sealed   []byte
	lastStep int64
	owner    []byte // a pending secret's owner hash
}

// errStepNotRecorded means the UPDATE that spends a time step matched no
// row although the credential was locked and its last step older: the guess
// is not accepted. It cannot happen while every writer of last_step holds
// the row lock.
var errStepNotRecorded = errors.New("time step not recorded")

// stepRecorded checks that the UPDATE spending a time step changed the row.
func stepRecorded(tag pgconn.CommandTag) error {
	if tag.RowsAffected() != 1 {
		return errStepNotRecorded
	}
	return nil
}

// attempt judges one guess for userID. Guesses for one user are judged one
// at a time: the first statement locks the user's credential row and every
// verdict is written before the lock is released. The guess is reserved on
// the user's throttle key in the same round trip (throttle.QueueReserve),
// so it counts as a failure unless check accepts it. attempt checks the
// row's state (confirmed or not, per wantConfirmed) and the throttle, then
// runs check, which returns its verdict apart from internal errors: a
// wrong code must still commit its reserved failure, so verdicts do not
// roll back. check queues its writes (on u) only when its verdict is nil,
// and may run statements of its own in the transaction (spending a
// recovery code).
//
// Two round trips: BEGIN with the locking read and the reservation, then
// the verdict's writes with COMMIT (db.Tx). In a transaction the caller
// began (db.Tx in ctx), the lock lasts until the caller commits.
func (m *TOTP) attempt(ctx context.Context, userID string, wantConfirmed bool,
	check func(ctx context.Context, u *db.Unit, c credential) (verdict, err error)) error {
	var verdict error
	err := db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		var c credential
		var found, confirmed bool
		u.Queue(`
			SELECT secret_encrypted, last_step, confirmed_at IS NOT NULL, enrollment_owner
			FROM totp_credentials WHERE user_id = $1 FOR UPDATE`,
			userID).Row(func(row pgx.Row) error {
			err := row.Scan(&c.sealed, &c.lastStep, &confirmed, &c.owner)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
		guess := m.limiter().QueueReserve(ctx, []string{throttleKey(userID)}, nil)
		if err := u.Send(ctx); err != nil {
			return err
		}
		switch wait := guess.Wait(); {
		case wait > 0:
			verdict = &ThrottledError{RetryAfter: wait}
		case !found, wantConfirmed && !confirmed:
			verdict = ErrNotEnrolled
			guess.QueueNotJudged(ctx)
		case !wantConfirmed && confirmed:
			verdict = ErrAlreadyEnrolled
			guess.QueueNotJudged(ctx)
		default:
			var err error
			if verdict, err = check(ctx, u, c); err != nil {
				return err
			}
			switch {
			case verdict == nil:
				guess.QueueSucceeded(ctx)
			case errors.Is(verdict, ErrNotEnrolled): // nothing to judge it against
				guess.QueueNotJudged(ctx)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return verdict
}

// wrap adds the operation to internal errors and leaves verdicts bare.
func wrap(op string, err error) error {
	var te *ThrottledError
	switch {
	case errors.Is(err, ErrInvalidCode), errors.Is(err, ErrReplayed), errors.Is(err, ErrNotEnrolled),
		errors.Is(err, ErrAlreadyEnrolled), errors.As(err, &te):
		return err
	}
	return fmt.Errorf("mfa: %s: %w", op, err)
}

// match finds the time step code belongs to among now and totpSkew steps
// either side. All candidates are computed and compared in constant time,
// so timing does not tell which step (or how many digits) matched. When
// two steps share a code, the later wins, which blocks more under the
// replay rule rather than less.
func (m *TOTP) match(c credential, userID, code string) (step int64, ok bool, err error) {
	secret, err := m.open(c.sealed, userID)
	if err != nil {
		return 0, false, err
	}
	now := stepAt(m.now())
	for s := now - totpSkew; s <= now+totpSkew; s++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totpOpts)
		if err != nil {
			return 0, false, fmt.Errorf("stored secret: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok, nil
}

// stepAt is the RFC 6238 time step of t.
func stepAt(t time.Time) int64 {
	u := t.Unix()
	if u < 0 {
		return (u - totpPeriod + 1) / totpPeriod
	}
	return u / totpPeriod
}

func (m *TOTP) open(sealed []byte, userID string) (string, error) {
	pt, err := m.Box.Open(sealed, []byte(userID))
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// GenerateCode returns the 6-digit code an authenticator app shows at t for
// a base32 secret, or "" if the secret is not base32. Tests and browser
// tests use it to act as the user's phone.
func GenerateCode(secret string, t time.Time) string {
	code, err := totp.GenerateCodeCustom(secret, t, totpOpts)
	if err != nil {
		return ""
	}
	return code
}

// Disable deletes the user's TOTP credential, confirmed or pending, and all
// recovery codes: both the user's own "turn off 2FA" (after the caller has
// checked the password and a current code) and an administrator's reset.
// The caller ends the user's sessions. ErrNotEnrolled means there was
// nothing to delete.
func (m *TOTP) Disable(ctx context.Context, userID string) error {
	uid, err := canonicalUserID("disable", userID)
	if err != nil {
		return err
	}
	err = db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, m.Pool)
		// Credential first, then codes: the order verification locks them
		// in, so the two never deadlock.
		tag, err := tx.Exec(ctx, `DELETE FROM totp_credentials WHERE user_id = $1`, uid)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, uid); err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotEnrolled
		}
		return nil
	})
	if errors.Is(err, ErrNotEnrolled) {
		return ErrNotEnrolled
	}
	if err != nil {
		return fmt.Errorf("mfa: disable: %w", err)
	}
	return nil
}

// ReencryptAll re-seals with the Box's current key every secret that an
// older key sealed, after an operator prepended a new server secret, and
// returns how many it re-sealed. Each row is swapped only if it still holds
// the value read, so it is safe to run on every instance at once and
// alongside enrollments. A row no key opens is reported in the error and
// does not stop the others.
func (m *TOTP) ReencryptAll(ctx context.Context) (int, error) {
	type row struct {
		userID string
		sealed []byte
	}
	rows, err := db.Conn(ctx, m.Pool).Query(ctx, `SELECT user_id::text, secret_encrypted FROM totp_credentials`)
	if err != nil {
		return 0, fmt.Errorf("mfa: reencrypt: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.userID, &x.sealed)
		return x, err
	})
	if err != nil {
		return 0, fmt.Errorf("mfa: reencrypt: %w", err)
	}
	var n int
	var errs []error
	for _, r := range all {
		if !m.Box.NeedsRotation(r.sealed) {
			continue
		}
		pt, err := m.Box.Open(r.sealed, []byte(r.userID))
		if err != nil {
			errs = append(errs, fmt.Errorf("mfa: reencrypt user %s: %w", r.userID, err))
			continue
		}
		tag, err := db.Conn(ctx, m.Pool).Exec(ctx,
			`UPDATE totp_credentials SET secret_encrypted = $3 WHERE user_id = $1 AND secret_encrypted = $2`,
			r.userID, r.sealed, m.Box.Seal(pt, []byte(r.userID)))
		if err != nil {
			return n, fmt.Errorf("mfa: reencrypt: %w", err)
		}
		n += int(tag.RowsAffected())
	}
	return n, errors.Join(errs...)
}
