package passkey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

// Every statement of the package is in this file.

// RegisteredSQL is "the user has a passkey" as a boolean SQL expression on
// userID, a column or parameter of the caller's statement ("u.id", "$1"),
// for a caller that needs the answer in a statement it makes anyway (the
// password step reads it with the password hash, to know which step comes
// next).
func RegisteredSQL(userID string) string {
	return `EXISTS (SELECT 1 FROM passkey_credentials WHERE user_id = ` + userID + `)`
}

const passkeyColumns = `id::text, user_id::text, name, aaguid::text, transports, backup_eligible, backup_state,
	created_at, last_used_at`

func scanPasskey(row pgx.Row) (Passkey, error) {
	var p Passkey
	err := row.Scan(&p.ID, &p.UserID, &p.Name, &p.AAGUID, &p.Transports, &p.BackupEligible, &p.BackupState,
		&p.CreatedAt, &p.LastUsedAt)
	return p, err
}

// List returns the user's passkeys, oldest first.
func (s *Service) List(ctx context.Context, userID string) ([]Passkey, error) {
	if _, err := userHandle(userID); err != nil {
		return nil, nil
	}
	rows, err := db.Conn(ctx, s.Pool).Query(ctx, `SELECT `+passkeyColumns+`
		FROM passkey_credentials WHERE user_id = $1::uuid ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("passkey: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Passkey, error) { return scanPasskey(row) })
	if err != nil {
		return nil, fmt.Errorf("passkey: list: %w", err)
	}
	if out == nil {
		out = []Passkey{}
	}
	return out, nil
}

// Registered reports whether the user has a passkey.
func (s *Service) Registered(ctx context.Context, userID string) (bool, error) {
	if _, err := userHandle(userID); err != nil {
		return false, nil
	}
	var on bool
	if err := db.Conn(ctx, s.Pool).QueryRow(ctx, `SELECT `+RegisteredSQL("$1::uuid"), userID).Scan(&on); err != nil {
		return false, fmt.Errorf("passkey: registered: %w", err)
	}
	return on, nil
}

// Rename gives one of the user's passkeys a new name. ErrNotFound when the
// user has no passkey with that id; ErrInvalidName.
func (s *Service) Rename(ctx context.Context, userID, id, name string) (Passkey, error) {
	name, err := CheckName(name)
	if err != nil {
		return Passkey{}, err
	}
	if !isUUID(userID) || !isUUID(id) {
		return Passkey{}, ErrNotFound
	}
	p, err := scanPasskey(db.Conn(ctx, s.Pool).QueryRow(ctx, `UPDATE passkey_credentials SET name = $3
		WHERE id = $1::uuid AND user_id = $2::uuid RETURNING `+passkeyColumns, id, userID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Passkey{}, ErrNotFound
	}
	if err != nil {
		return Passkey{}, fmt.Errorf("passkey: rename: %w", err)
	}
	return p, nil
}

// Remove deletes one of the user's passkeys, with the transaction in ctx
// if any (the caller ends sessions in it), and returns what it was, and
// how many passkeys the user has left. ErrNotFound when the user has no
// passkey with that id.
func (s *Service) Remove(ctx context.Context, userID, id string) (removed Passkey, left int, err error) {
	if !isUUID(userID) || !isUUID(id) {
		return Passkey{}, 0, ErrNotFound
	}
	// The user's passkeys are locked first, so two removals at once are
	// counted one after the other: the second sees what the first left.
	row := db.Conn(ctx, s.Pool).QueryRow(ctx, `
		WITH mine AS (SELECT id FROM passkey_credentials WHERE user_id = $2::uuid FOR UPDATE),
		gone AS (DELETE FROM passkey_credentials WHERE id = $1::uuid AND user_id = $2::uuid AND id IN (SELECT id FROM mine)
			RETURNING `+passkeyColumns+`)
		SELECT gone.*, (SELECT count(*) FROM mine) - 1 FROM gone`, id, userID)
	err = row.Scan(&removed.ID, &removed.UserID, &removed.Name, &removed.AAGUID, &removed.Transports,
		&removed.BackupEligible, &removed.BackupState, &removed.CreatedAt, &removed.LastUsedAt, &left)
	if errors.Is(err, pgx.ErrNoRows) {
		return Passkey{}, 0, ErrNotFound
	}
	if err != nil {
		return Passkey{}, 0, fmt.Errorf("passkey: remove: %w", err)
	}
	return removed, left, nil
}

// RemoveAll deletes every passkey of the user (an administrator's reset of
// the second factor), with the transaction in ctx if any, and returns how
// many there were.
func (s *Service) RemoveAll(ctx context.Context, userID string) (int, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `DELETE FROM passkey_credentials WHERE user_id = $1::uuid`, userID)
	if err != nil {
		return 0, fmt.Errorf("passkey: remove all: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// loadUser reads p's credentials, for a registration (to exclude them) or
// the second factor (to list them).
func (s *Service) loadUser(ctx context.Context, p Person) (*user, error) {
	handle, err := userHandle(p.ID)
	if err != nil {
		return nil, err
	}
	rows, err := db.Conn(ctx, s.Pool).Query(ctx, `SELECT `+credentialColumns+`
		FROM passkey_credentials c WHERE c.user_id = $1::uuid ORDER BY c.created_at`, p.ID)
	if err != nil {
		return nil, fmt.Errorf("passkey: credentials: %w", err)
	}
	creds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (webauthn.Credential, error) {
		c, err := scanCredential(row)
		return c.cred, err
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: credentials: %w", err)
	}
	name := p.Name
	if name == "" {
		name = p.Email
	}
	return &user{handle: handle, name: name, email: p.Email, creds: creds}, nil
}

const credentialColumns = `c.id::text, c.user_id::text, c.name, c.credential_id, c.public_key, c.sign_count,
	c.transports, c.aaguid, c.backup_eligible, c.backup_state`

// storedCredential is a credential row as go-webauthn verifies with it.
type storedCredential struct {
	id, userID, name string
	disabled         bool
	cred             webauthn.Credential
}

func scanCredential(row pgx.Row, extra ...any) (storedCredential, error) {
	var (
		c          storedCredential
		signCount  int64
		transports []string
		aaguid     uuid.UUID
		be, bs     bool
	)
	dest := append([]any{&c.id, &c.userID, &c.name, &c.cred.ID, &c.cred.PublicKey, &signCount, &transports, &aaguid,
		&be, &bs}, extra...)
	if err := row.Scan(dest...); err != nil {
		return storedCredential{}, err
	}
	c.cred.Authenticator.SignCount = uint32(signCount)
	c.cred.Authenticator.AAGUID = aaguid[:]
	c.cred.AttestationFormat = string(protocol.AttestationFormatNone)
	// Registration required presence and verification, so both hold for
	// every stored credential.
	c.cred.Flags = webauthn.CredentialFlags{UserPresent: true, UserVerified: true, BackupEligible: be, BackupState: bs}
	for _, t := range transports {
		c.cred.Transport = append(c.cred.Transport, protocol.AuthenticatorTransport(t))
	}
	return c, nil
}

// takeAssertion is takeChallenge for an assertion, which also reads, in
// the same round trip, the credential it names (credentialID) with
// whether its account is disabled. found is false when no account has the
// credential. ErrChallenge when the challenge is not waiting.
func (s *Service) takeAssertion(ctx context.Context, hash, credentialID []byte) (challengeRow, storedCredential, bool, error) {
	ch := challengeRow{hash: hash}
	var (
		userID   *string
		found    bool
		disabled bool
	)
	// The credential's columns are coalesced: a row comes back whenever
	// the challenge existed, with or without a credential to go with it.
	c, err := scanCredential(s.Pool.QueryRow(ctx, `
		WITH ch AS (
			DELETE FROM passkey_challenges WHERE challenge_hash = $1
			RETURNING purpose, binding, user_id, ceremony, expires_at
		)
		SELECT coalesce(c.id::text, ''), coalesce(c.user_id::text, ''), coalesce(c.name, ''),
			coalesce(c.credential_id, ''::bytea), coalesce(c.public_key, ''::bytea), coalesce(c.sign_count, 0),
			coalesce(c.transports, '{}'), coalesce(c.aaguid, '00000000-0000-0000-0000-000000000000'),
			coalesce(c.backup_eligible, false), coalesce(c.backup_state, false),
			ch.purpose, ch.binding, ch.user_id::text, ch.ceremony, ch.expires_at,
			c.id IS NOT NULL, coalesce(u.disabled_at IS NOT NULL, false)
		FROM ch LEFT JOIN passkey_credentials c ON c.credential_id = $2 LEFT JOIN users u ON u.id = c.user_id`,
		hash, credentialID), &ch.purpose, &ch.binding, &userID, &ch.ceremony, &ch.expiresAt, &found, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return challengeRow{}, storedCredential{}, false, ErrChallenge
	}
	if err != nil {
		return challengeRow{}, storedCredential{}, false, fmt.Errorf("passkey: challenge: %w", err)
	}
	if userID != nil {
		ch.userID = *userID
	}
	c.disabled = disabled
	return ch, c, found, nil
}

// insert stores a new credential, with the transaction in ctx if any.
func (s *Service) insert(ctx context.Context, p Passkey, cred *webauthn.Credential) (string, error) {
	var id string
	err := db.Conn(ctx, s.Pool).QueryRow(ctx, `
		INSERT INTO passkey_credentials (user_id, credential_id, public_key, sign_count, transports, aaguid,
			backup_eligible, backup_state, attachment, name, created_at)
		SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
		WHERE (SELECT count(*) FROM passkey_credentials WHERE user_id = $1::uuid) < $12
		RETURNING id::text`,
		p.UserID, cred.ID, cred.PublicKey, int64(cred.Authenticator.SignCount), p.Transports, p.AAGUID,
		p.BackupEligible, p.BackupState, string(cred.Authenticator.Attachment), p.Name, p.CreatedAt, MaxPerUser).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrTooMany
	case db.IsUniqueViolation(err):
		return "", ErrAlreadyRegistered
	case err != nil:
		return "", fmt.Errorf("passkey: store: %w", err)
	}
	return id, nil
}

// used records a verified assertion: the new counter, backup state and
// time. The counter moves only forward (or stays 0 for an authenticator
// that keeps none), in the statement itself, so two answers racing with
// the same counter cannot both pass.
func (s *Service) used(ctx context.Context, id string, before, after uint32, backupState bool) error {
	tag, err := db.Conn(ctx, s.Pool).Exec(ctx, `
		UPDATE passkey_credentials SET sign_count = $3, backup_state = $4, last_used_at = $5
		WHERE id = $1::uuid AND sign_count = $2 AND ($3 > $2 OR ($3 = 0 AND $2 = 0))`,
		id, int64(before), int64(after), backupState, s.now())
	if err != nil {
		return fmt.Errorf("passkey: record use: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrCounter
	}
	return nil
}

// challengeRow is a ceremony waiting for its answer.
type challengeRow struct {
	hash, binding []byte
	purpose       string
	userID        string // "" for a passwordless sign-in
	ceremony      []byte
	expiresAt     time.Time
}

func (s *Service) insertChallenge(ctx context.Context, c challengeRow) error {
	var userID *string
	if c.userID != "" {
		userID = &c.userID
	}
	_, err := s.Pool.Exec(ctx, `INSERT INTO passkey_challenges (challenge_hash, purpose, binding, user_id, ceremony, expires_at)
		VALUES ($1, $2, $3, $4::uuid, $5, $6)`, c.hash, c.purpose, c.binding, userID, c.ceremony, c.expiresAt)
	if err != nil {
		return fmt.Errorf("passkey: begin: %w", err)
	}
	return nil
}

// takeChallenge deletes the challenge with hash and returns it: on the
// pool, never in the caller's transaction, so it is spent even when what
// follows fails or rolls back. ErrChallenge when there is none.
func (s *Service) takeChallenge(ctx context.Context, hash []byte) (challengeRow, error) {
	c := challengeRow{hash: hash}
	var userID *string
	err := s.Pool.QueryRow(ctx, `DELETE FROM passkey_challenges WHERE challenge_hash = $1
		RETURNING purpose, binding, user_id::text, ceremony, expires_at`, hash).
		Scan(&c.purpose, &c.binding, &userID, &c.ceremony, &c.expiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return challengeRow{}, ErrChallenge
	}
	if err != nil {
		return challengeRow{}, fmt.Errorf("passkey: challenge: %w", err)
	}
	if userID != nil {
		c.userID = *userID
	}
	return c, nil
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// Sweeps are the janitor's for this package's tables: a ceremony's
// challenge is dead once it expires, kept an hour for clocks that lag.
var Sweeps = []db.Sweep{
	{Table: "passkey_challenges", Key: "challenge_hash", Due: "expires_at < $1", Keep: time.Hour},
}
