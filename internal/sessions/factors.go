package sessions

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

// QueueSecondFactorGiven queues in the unit in ctx the record that the
// owner of the live two-factor session sid gave a second factor again now
// (to confirm an administrator's destructive action): SecondFactorAt moves,
// nothing else. The unit fails with ErrNoSession when the session has ended
// or has one factor only.
func (m *Manager) QueueSecondFactorGiven(ctx context.Context, sid, userID string) {
	unit(ctx).Queue(`
		UPDATE sso_sessions SET second_factor_at = $3
		WHERE id = $1::uuid AND user_id = $2::uuid AND revoked_at IS NULL AND second_factor_at IS NOT NULL
		RETURNING id`,
		nullUUID(sid), nullUUID(userID), m.Now()).
		Row(func(row pgx.Row) error {
			var id string
			if err := row.Scan(&id); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return ErrNoSession
				}
				return fmt.Errorf("sessions: second factor given: %w", err)
			}
			return nil
		})
}

// DropSecondFactor follows the owner's removal of their second factor, in
// the transaction in ctx (or one of its own), for the session sid in which
// they removed it and which lives on: the session becomes a password-only
// one (amr pwd, acr urn:idp:acr:pwd), so the tokens it issues next say so,
// and every code and token it issued before, which claim two factors, is
// revoked. Its apps are not told: the person is still signed in, and an
// app that signs them in again silently gets tokens that tell the truth.
// (The person's other sessions are FactorsChanged's.)
//
// Locks are taken in Revoke's order: the account, the session, codes,
// refresh tokens, access tokens.
func (m *Manager) DropSecondFactor(ctx context.Context, userID, sid string) error {
	err := db.Tx(ctx, m.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		u.Queue(`SELECT 1 FROM users WHERE id = $1::uuid FOR NO KEY UPDATE`, nullUUID(userID))
		u.Queue(`UPDATE sso_sessions SET amr = $3, acr = $4, second_factor_at = NULL
			WHERE id = $1::uuid AND user_id = $2::uuid AND revoked_at IS NULL`,
			nullUUID(sid), nullUUID(userID), []string{AMRPassword}, ACRPassword)
		u.Queue(`UPDATE oauth_authorize_codes SET active = false WHERE active AND sid = $1::uuid`, nullUUID(sid))
		u.Queue(`UPDATE oauth_refresh_tokens SET active = false WHERE active AND sid = $1::uuid`, nullUUID(sid))
		u.Queue(`DELETE FROM oauth_access_tokens WHERE sid = $1::uuid`, nullUUID(sid))
		return nil
	})
	if err != nil {
		return fmt.Errorf("sessions: drop second factor: %w", err)
	}
	return nil
}
