package users

import (
	"context"
	"fmt"

	"github.com/idp/idp/internal/db"
)

// Hash is the chosen password's argon2id hash, for a sign-up that waits
// (package verify) before the account exists.
func (p NewPassword) Hash() string { return p.hash }

// ChosenPassword is a password chosen earlier (ChoosePassword), from its
// Hash.
func ChosenPassword(hash string) NewPassword { return NewPassword{hash: hash} }

// CreateVerified adds an account whose address its owner has just proven
// (a self-registration confirmed from its mail), with a password chosen
// when they signed up. ErrEmailTaken when the address has an account by
// now. In the unit of work in ctx, if any.
func (s *Store) CreateVerified(ctx context.Context, email, name string, p NewPassword) (User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	if name, err = normalizeName(name); err != nil {
		return User{}, err
	}
	now := s.Now()
	var u User
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		tx := db.Conn(ctx, s.Pool)
		if u, err = scanUser(tx.QueryRow(ctx, `
			INSERT INTO users AS u (email, name, created_at, updated_at, email_verified_at)
			VALUES ($1, $2, $3, $3, $3)
			RETURNING `+userColumns, email, name, now)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO password_credentials (user_id, hash, updated_at, must_change) VALUES ($1, $2, $3, false)`,
			u.ID, p.hash, now)
		return err
	})
	if db.IsUniqueViolation(err) {
		return User{}, fmt.Errorf("%w: %s", ErrEmailTaken, email)
	}
	if err != nil {
		return User{}, fmt.Errorf("users: create verified: %w", err)
	}
	return u, nil
}
