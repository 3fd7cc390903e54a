// Package users owns accounts and their passwords: creating and finding
// people by email, checking a password at sign-in (argon2id, throttled, the
// same answer for an unknown account as for a wrong password), and the
// administrative switches on an account (disabled, 2FA required).
//
// Ending sessions when a password changes or an account is disabled is the
// caller's job, through the sessions package; this package only changes the
// account.
package users

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/throttle"
)

// User is an account. The JSON form is what the CLI and admin API print.
type User struct {
	ID         string     `json:"id"`
	Email      string     `json:"email"`
	Name       string     `json:"name"`
	IsAdmin    bool       `json:"is_admin"`
	RequireMFA bool       `json:"require_mfa"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	// EmailVerifiedAt is when the address was proven to reach the owner
	// (package verify); nil for an address nobody has proven.
	EmailVerifiedAt *time.Time `json:"email_verified_at,omitempty"`
}

// EmailVerified reports whether the account's address is verified.
func (u User) EmailVerified() bool { return u.EmailVerifiedAt != nil }

// Disabled reports whether the account is disabled.
func (u User) Disabled() bool { return u.DisabledAt != nil }

var (
	ErrNotFound     = errors.New("users: user not found")
	ErrEmailTaken   = errors.New("users: email already registered")
	ErrInvalidEmail = errors.New("users: invalid email address")
	ErrInvalidName  = fmt.Errorf("users: a name is at most %d characters, without control characters", MaxNameRunes)
	ErrWeakPassword = errors.New("users: password rejected")
	// ErrPasswordExpired: the password was right, but it was a temporary
	// one and its time ran out before it was replaced.
	ErrPasswordExpired    = errors.New("users: temporary password expired")
	ErrInvalidCredentials = errors.New("users: invalid email or password")
	ErrDisabled           = errors.New("users: account disabled")
)

// ThrottledError is returned by Authenticate when too many recent failures
// for the account or the client address mean it must wait; no password was
// checked.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("users: too many failed attempts, retry in %s", e.RetryAfter)
}

// NewUser is what Create needs.
type NewUser struct {
	Email, Name, Password string
	Admin                 bool
	// MustChangePassword makes Password temporary: the person chooses
	// their own at the first sign-in.
	MustChangePassword bool
}

// Store reads and writes accounts in PostgreSQL.
type Store struct {
	Pool    *pgxpool.Pool
	Limiter *throttle.Limiter
	Now     func() time.Time
	// Breached, when set, is asked about every password being chosen.
	Breached *BreachedPasswords
	Logger   *slog.Logger // nil: slog.Default()
}

// NewStore returns a Store with the default password throttle.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{Pool: pool, Limiter: throttle.Default(pool), Now: time.Now}
}

// MaxNameRunes bounds a display name: it is shown on every page and in
// every ID token's name claim.
const MaxNameRunes = 200

// normalizeName trims a display name and checks it fits (ErrInvalidName).
func normalizeName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > MaxNameRunes || strings.ContainsFunc(name, unicode.IsControl) {
		return "", ErrInvalidName
	}
	return name, nil
}

// NormalizeEmail trims email and checks it is a bare address
// ("a@example.com", not "A <a@example.com>"). Case is kept as given; lookups
// ignore it.
func NormalizeEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidEmail)
	}
	// 254 is the longest address that fits in an SMTP path (RFC 5321).
	if len(email) > 254 {
		return "", fmt.Errorf("%w: longer than 254 bytes", ErrInvalidEmail)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", fmt.Errorf("%w: %q is not a bare address like name@example.com", ErrInvalidEmail, email)
	}
	return email, nil
}

const userColumns = `u.id::text, u.email, u.name, u.is_admin, u.require_mfa, u.disabled_at, u.created_at, u.email_verified_at`

func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	dest := append([]any{&u.ID, &u.Email, &u.Name, &u.IsAdmin, &u.RequireMFA, &u.DisabledAt, &u.CreatedAt, &u.EmailVerifiedAt}, extra...)
	err := row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	return u, err
}

// validID reports whether id is a UUID, so a malformed id from a URL is a
// plain "not found" rather than a database error.
func validID(id string) bool {
	var u pgtype.UUID
	return u.Scan(id) == nil
}

// Create adds an account with a password. Nothing is written when the email
// or password is rejected.
func (s *Store) Create(ctx context.Context, nu NewUser) (User, error) {
	email, err := NormalizeEmail(nu.Email)
	if err != nil {
		return User{}, err
	}
	name, err := normalizeName(nu.Name)
	if err != nil {
		return User{}, err
	}
	// Chosen (and so hashed) before the transaction: no connection is held
	// for the ~tens of milliseconds argon2 takes.
	p, err := s.ChoosePassword(ctx, nu.Password)
	if err != nil {
		return User{}, err
	}
	now := s.Now()
	var u User
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		u, err = scanUser(tx.QueryRow(ctx, `
			INSERT INTO users AS u (email, name, is_admin, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $4)
			RETURNING `+userColumns,
			email, name, nu.Admin, now))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO password_credentials (user_id, hash, updated_at, must_change, expires_at)
			VALUES ($1, $2, $3, $4, $5)`,
			u.ID, p.hash, now, nu.MustChangePassword, temporaryExpiry(nu.MustChangePassword, now))
		return err
	})
	if db.IsUniqueViolation(err) {
		return User{}, fmt.Errorf("%w: %s", ErrEmailTaken, email)
	}
	if err != nil {
		return User{}, fmt.Errorf("users: create: %w", err)
	}
	return u, nil
}

// ByEmail finds an account by email, ignoring case.
func (s *Store) ByEmail(ctx context.Context, email string) (User, error) {
	u, err := scanUser(db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT `+userColumns+` FROM users u WHERE lower(u.email) = lower($1)`, strings.TrimSpace(email)))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, fmt.Errorf("users: by email: %w", err)
	}
	return u, err
}

// ByID finds an account by id. A malformed id is ErrNotFound.
func (s *Store) ByID(ctx context.Context, id string) (User, error) {
	if !validID(id) {
		return User{}, ErrNotFound
	}
	u, err := scanUser(db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, fmt.Errorf("users: by id: %w", err)
	}
	return u, err
}

// List returns up to limit accounts, oldest first; limit <= 0 means all.
func (s *Store) List(ctx context.Context, limit int) ([]User, error) {
	q := `SELECT ` + userColumns + ` FROM users u ORDER BY u.created_at, u.id`
	args := []any{}
	if limit > 0 {
		q += ` LIMIT $1`
		args = append(args, limit)
	}
	rows, err := db.Conn(ctx, s.Pool).Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("users: list: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
	if err != nil {
		return nil, fmt.Errorf("users: list: %w", err)
	}
	return list, nil
}

// userKey is the throttle key of an account. It is keyed by email, not id,
// so guesses at unknown accounts are slowed the same way. No address is
// longer than 254 bytes, so cutting there only merges keys of accounts that
// cannot exist, and bounds what a request can make us store.
func userKey(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	if len(email) > 254 {
		// Cut at a character: a key that is not UTF-8 is refused by
		// PostgreSQL (the sign-in was a 500; found by fuzzing).
		email = strings.ToValidUTF8(email[:254], "")
	}
	return "pwd-user:" + email
}

// Authenticate checks an email and password at sign-in, as SignIn does,
// and settles the throttle itself. clientAddr is the client's address for
// the per-address throttle ("" skips that key).
//
// Errors: *ThrottledError when the account or address must wait (nothing is
// checked); ErrInvalidCredentials for an unknown account and for a wrong
// password alike, after the same amount of hashing; ErrDisabled for a
// disabled account with the right password.
func (s *Store) Authenticate(ctx context.Context, email, password, clientAddr string) (User, error) {
	si, err := s.SignIn(ctx, email, password, clientAddr)
	if err != nil {
		return User{}, err
	}
	err = db.Pipelined(ctx, s.Pool, func(ctx context.Context) error {
		si.QueueSucceeded(ctx)
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("users: authenticate: %w", err)
	}
	return si.User, nil
}

// SignIn is a password accepted at sign-in.
type SignIn struct {
	User User
	// SecondFactor reports a confirmed TOTP credential (mfa.TOTP.Enabled),
	// read with the password hash: the sign-in knows its next step without
	// asking again.
	SecondFactor bool
	// Passkey reports that the account has a passkey (passkey.Service),
	// which is a second factor too.
	Passkey bool
	// MustChangePassword: the password is a temporary one an administrator
	// set; the person chooses their own before the sign-in completes.
	MustChangePassword bool

	attempt *throttle.Reservation
}

// QueueSucceeded queues in the unit in ctx what a successful sign-in owes
// the throttle: the account's failures, this attempt's reservation
// included, are forgotten. The caller sends it with its own next write, and
// must send it: until then the attempt counts as a failure.
func (si SignIn) QueueSucceeded(ctx context.Context) {
	si.attempt.QueueSucceeded(ctx)
}

// SignIn checks an email and password at sign-in, like Authenticate, but
// leaves the throttle's due to the caller (SignIn.QueueSucceeded), who sends
// it in a round trip it makes anyway.
//
// One round trip reserves the attempt on the account's throttle key (it
// counts as a failure before the hash is looked at, so concurrent guesses
// see each other: throttle.Limiter.QueueReserve), checks the address's, and
// reads the account, its password hash and whether it has a second factor.
// A wrong password costs one more, to count it against the address; a right
// one none, unless its hash is upgraded.
func (s *Store) SignIn(ctx context.Context, email, password, clientAddr string) (SignIn, error) {
	if !utf8.ValidString(email) || strings.ContainsRune(email, 0) {
		// No account has such an address, and PostgreSQL would refuse it
		// as a parameter (the sign-in was a 500; found by fuzzing).
		return SignIn{}, ErrInvalidCredentials
	}
	account := []string{userKey(email)}
	var address []string
	if clientAddr != "" {
		address = []string{AddressKey(clientAddr)}
	}
	var (
		attempt *throttle.Reservation
		a       *signInAccount
	)
	err := db.Pipelined(ctx, s.Pool, func(ctx context.Context) error {
		attempt = s.Limiter.QueueReserve(ctx, account, address)
		a = queueAccount(ctx, email)
		return nil
	})
	if err != nil {
		return SignIn{}, fmt.Errorf("users: sign in: %w", err)
	}
	// Refused before the hash is looked at: a throttled guess learns
	// nothing and costs no hashing.
	if wait := attempt.Wait(); wait > 0 {
		return SignIn{}, &ThrottledError{RetryAfter: wait}
	}

	ok, err := checkSignInPassword(ctx, a, password)
	if err != nil {
		return SignIn{}, fmt.Errorf("users: sign in: %w", err)
	}
	if !ok {
		// The account's attempt was counted when it was reserved.
		if len(address) > 0 {
			if err := s.Limiter.Fail(ctx, address...); err != nil {
				return SignIn{}, fmt.Errorf("users: sign in: %w", err)
			}
		}
		return SignIn{}, ErrInvalidCredentials
	}
	refused := error(nil)
	switch {
	case a.user.Disabled():
		refused = ErrDisabled
	case a.expiresAt != nil && !s.Now().Before(*a.expiresAt):
		refused = ErrPasswordExpired
	}
	if refused != nil {
		// The password was right: it is no failure to count.
		if err := s.Limiter.Reset(ctx, account...); err != nil {
			return SignIn{}, fmt.Errorf("users: sign in: %w", err)
		}
		return SignIn{}, refused
	}
	if needsRehash(a.hash) {
		// Upgrading parameters needs the plain password, which only a
		// successful sign-in has. A failure here must not fail the sign-in.
		if hash, err := HashPassword(ctx, password); err == nil {
			_ = s.storeHash(ctx, a.user.ID, hash, nil)
		}
	}
	return SignIn{User: a.user, SecondFactor: a.secondFactor, Passkey: a.passkey, MustChangePassword: a.mustChange, attempt: attempt}, nil
}

// AddressKey is the throttle key of a client address: IPv4 addresses one
// by one, IPv6 addresses by their /64, which one subscriber usually holds
// whole (a client hopping through its addresses would otherwise never be
// slowed down).
func AddressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "pwd-ip:" + truncateKey(addr)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return "pwd-ip:" + ip.String()
	}
	p, _ := ip.Prefix(64)
	return "pwd-ip:" + p.String()
}

// truncateKey bounds what a request can make us store.
func truncateKey(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// signInAccount is what a sign-in reads about the account named by an email.
type signInAccount struct {
	user         User   // the zero User when no account has the email
	hash         string // "" when none
	mustChange   bool   // the password is temporary
	expiresAt    *time.Time
	secondFactor bool
	passkey      bool
}

// queueAccount queues in the unit in ctx the read of the account with email
// (ignoring case), its password hash and whether it has a second factor.
func queueAccount(ctx context.Context, email string) *signInAccount {
	a := &signInAccount{}
	u, _ := db.From(ctx)
	u.Queue(`SELECT `+userColumns+`, p.hash, coalesce(p.must_change, false), p.expires_at, `+mfa.EnabledSQL("u.id")+`,
			`+passkey.RegisteredSQL("u.id")+`
		FROM users u LEFT JOIN password_credentials p ON p.user_id = u.id
		WHERE lower(u.email) = lower($1)`, strings.TrimSpace(email)).
		Row(func(row pgx.Row) error {
			var hash *string
			u, err := scanUser(row, &hash, &a.mustChange, &a.expiresAt, &a.secondFactor, &a.passkey)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			a.user = u
			if hash != nil {
				a.hash = *hash
			}
			return nil
		})
	return a
}

// checkSignInPassword reports whether password is the account's. An unknown
// account, or one without a password, takes as long as a wrong password:
// a dummy hash is checked instead, so timing does not tell which emails
// have accounts, and never matches. An oversized password never matches
// (no stored one can be that long) and is not hashed, which bounds the work
// a request can cause.
func checkSignInPassword(ctx context.Context, a *signInAccount, password string) (bool, error) {
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	if a.hash == "" {
		_, err := CheckPassword(ctx, dummyHash(), password)
		return false, err
	}
	return CheckPassword(ctx, a.hash, password)
}

// withHash loads an account and its password hash ("" when it has none).
func (s *Store) withHash(ctx context.Context, where string, arg any) (User, string, error) {
	var hash *string
	u, err := scanUser(db.Conn(ctx, s.Pool).QueryRow(ctx,
		`SELECT `+userColumns+`, p.hash FROM users u
		 LEFT JOIN password_credentials p ON p.user_id = u.id WHERE `+where, arg), &hash)
	if err != nil {
		return User{}, "", err
	}
	if hash == nil {
		return u, "", nil
	}
	return u, *hash, nil
}

// VerifyPassword re-confirms the password of a signed-in account before a
// sensitive change (disabling 2FA, say). It shares the account's sign-in
// throttle, so a stolen session cannot be used to guess the password faster.
// Errors: ErrNotFound, *ThrottledError, ErrInvalidCredentials.
func (s *Store) VerifyPassword(ctx context.Context, userID, password string) error {
	if !validID(userID) {
		return ErrNotFound
	}
	u, hash, err := s.withHash(ctx, `u.id = $1`, userID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("users: verify password: %w", err)
	}
	// Reserved before the hash, as at sign-in: concurrent guesses through
	// one stolen session see each other.
	attempt, err := s.Limiter.Reserve(ctx, userKey(u.Email))
	if err != nil {
		return fmt.Errorf("users: verify password: %w", err)
	}
	if wait := attempt.Wait(); wait > 0 {
		return &ThrottledError{RetryAfter: wait}
	}
	ok := false
	if hash != "" && len(password) <= MaxPasswordBytes {
		if ok, err = CheckPassword(ctx, hash, password); err != nil {
			return fmt.Errorf("users: verify password: %w", err)
		}
	}
	if !ok {
		return ErrInvalidCredentials // counted when reserved
	}
	err = db.Pipelined(ctx, s.Pool, func(ctx context.Context) error {
		attempt.QueueSucceeded(ctx)
		return nil
	})
	if err != nil {
		return fmt.Errorf("users: verify password: %w", err)
	}
	return nil
}

// TemporaryPasswordLifetime is how long a password an administrator set
// works if the person does not replace it: long enough to pass it on by
// another channel, short enough that a forgotten one does not linger
// (ASVS 5.0 6.4.1).
const TemporaryPasswordLifetime = 72 * time.Hour

// temporaryExpiry is when a password set at now stops working: nil for
// the person's own.
func temporaryExpiry(temporary bool, now time.Time) *time.Time {
	if !temporary {
		return nil
	}
	t := now.Add(TemporaryPasswordLifetime)
	return &t
}

// SameAsCurrent reports whether password is the account's current one. It
// counts no failures: it is for a person who has just proved the current
// password and every factor, choosing a new one, which must differ from a
// temporary password an administrator knows.
func (s *Store) SameAsCurrent(ctx context.Context, userID, password string) (bool, error) {
	if !validID(userID) {
		return false, ErrNotFound
	}
	_, hash, err := s.withHash(ctx, `u.id = $1`, userID)
	if err != nil {
		return false, err
	}
	if hash == "" || len(password) > MaxPasswordBytes {
		return false, nil
	}
	return CheckPassword(ctx, hash, password)
}

// SetPassword replaces an account's password after checking the policy
// (ChoosePassword, then StorePassword). Ending the account's sessions is
// the caller's job.
func (s *Store) SetPassword(ctx context.Context, userID, password string, temporary bool) error {
	if !validID(userID) {
		return ErrNotFound
	}
	p, err := s.ChoosePassword(ctx, password)
	if err != nil {
		return err
	}
	return s.StorePassword(ctx, userID, p, temporary)
}

// StorePassword replaces an account's password with a chosen one; a
// temporary one (set by an administrator) must be replaced by the person at
// their next sign-in. Ending the account's sessions is the caller's job.
func (s *Store) StorePassword(ctx context.Context, userID string, p NewPassword, temporary bool) error {
	if !validID(userID) {
		return ErrNotFound
	}
	return s.storeHash(ctx, userID, p.hash, &temporary)
}

// storeHash stores a password hash; mustChange, when not nil, sets whether
// it is temporary (nil, for a rehash, keeps what it was).
func (s *Store) storeHash(ctx context.Context, userID, hash string, mustChange *bool) error {
	now := s.Now()
	var expires *time.Time
	if mustChange != nil {
		expires = temporaryExpiry(*mustChange, now)
	}
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		INSERT INTO password_credentials (user_id, hash, updated_at, must_change, expires_at)
		SELECT id, $2, $3, coalesce($4, false), $5 FROM users WHERE id = $1
		ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at,
			must_change = coalesce($4, password_credentials.must_change),
			expires_at = CASE WHEN $4::boolean IS NULL THEN password_credentials.expires_at ELSE $5 END`,
		userID, hash, now, mustChange, expires)
	if err != nil {
		return fmt.Errorf("users: set password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// SetDisabled disables or re-enables an account. Disabling an already
// disabled account keeps the original time. Ending the account's sessions is
// the caller's job.
func (s *Store) SetDisabled(ctx context.Context, userID string, disabled bool) error {
	return s.update(ctx, "set disabled", userID,
		`disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, $3) ELSE NULL END`, disabled)
}

// Delete removes the account and, by cascade, everything stored under it:
// password, second factors, sessions, sign-ins in progress and consents.
// It does not end sessions or tell apps: callers revoke first
// (admin.Service.DeleteUser).
func (s *Store) Delete(ctx context.Context, userID string) error {
	if !validID(userID) {
		return ErrNotFound
	}
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `DELETE FROM users WHERE id = $1`, userID)
	if err != nil {
		return fmt.Errorf("users: delete: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// SetRequireMFA sets whether this account must use a second factor, whatever
// the global policy.
func (s *Store) SetRequireMFA(ctx context.Context, userID string, require bool) error {
	return s.update(ctx, "set require mfa", userID, `require_mfa = $2`, require)
}

// SetAdmin makes the account an administrator, or no longer one. Its
// tokens and console sessions follow at their next request: both check
// the flag every time.
func (s *Store) SetAdmin(ctx context.Context, userID string, admin bool) error {
	return s.update(ctx, "set admin", userID, `is_admin = $2`, admin)
}

// update runs UPDATE users SET <set>, updated_at = $3 WHERE id = $1 with $2 = arg.
func (s *Store) update(ctx context.Context, op, userID, set string, arg any) error {
	if !validID(userID) {
		return ErrNotFound
	}
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx,
		`UPDATE users SET `+set+`, updated_at = $3 WHERE id = $1`, userID, arg, s.Now())
	if err != nil {
		return fmt.Errorf("users: %s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
