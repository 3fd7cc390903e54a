package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/users"
)

// benchPassword is every seeded account's password.
const benchPassword = "bench-password-correct-horse"

// Client ids of the seeded apps.
const (
	resourceID = "bench-resource" // client_credentials and introspection
	appAID     = "bench-app-a"    // where people sign in
	appBID     = "bench-app-b"    // the second app of silent SSO, and refresh
	consoleID  = "bench-console"  // the administrator's app (admin scope)
	signerID   = "bench-signer"   // client_credentials with private_key_jwt
)

// createClient registers a client and returns its secret.
func (r *runner) createClient(ctx context.Context, c clients.Client) (string, error) {
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if len(c.RedirectURIs) == 0 && c.GrantTypes[0] == "authorization_code" {
		c.RedirectURIs = []string{"http://" + callbackHost + "/callback"}
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if c.GrantTypes[0] == "authorization_code" {
		c.IDTokenAlg = r.cfg.IDTokenAlg
	}
	secret, err := r.in.srv.Clients.Create(ctx, c)
	if err != nil {
		return "", fmt.Errorf("bench: seed client %s: %w", c.ID, err)
	}
	return secret, nil
}

// seedApps registers the resource server and the apps every scenario uses.
func (r *runner) seedApps(ctx context.Context) error {
	secret, err := r.createClient(ctx, clients.Client{ID: resourceID, GrantTypes: []string{"client_credentials"}})
	if err != nil {
		return err
	}
	r.resource = &app{id: resourceID, secret: secret}
	if r.signer, err = newSigner(signerID); err != nil {
		return err
	}
	if _, err := r.createClient(ctx, clients.Client{ID: signerID, GrantTypes: []string{"client_credentials"},
		TokenEndpointAuthMethod: clients.PrivateKeyJWT, TokenEndpointAuthSigningAlg: "ES256", JWKS: r.signer.jwks}); err != nil {
		return err
	}
	for _, a := range []struct {
		dst    **app
		id     string
		scopes []string
	}{
		{&r.appA, appAID, nil},
		{&r.appB, appBID, nil},
		{&r.console, consoleID, []string{"openid", "profile", "email", "admin"}},
	} {
		secret, err := r.createClient(ctx, clients.Client{ID: a.id, Scopes: a.scopes})
		if err != nil {
			return err
		}
		scopes := []string{"openid", "profile", "email"}
		if a.id == consoleID {
			scopes = append(scopes, "admin")
		}
		*a.dst = newApp(r.provider, a.id, secret, scopes...)
	}
	return nil
}

// createUser makes an account through users.Store (one argon2id hash).
func (r *runner) createUser(ctx context.Context, email string, admin bool) (users.User, error) {
	u, err := r.in.srv.Users.Create(ctx, users.NewUser{Email: email, Name: "Bench " + email, Password: benchPassword, Admin: admin})
	if err != nil {
		return users.User{}, fmt.Errorf("bench: seed user %s: %w", email, err)
	}
	return u, nil
}

// mfaUser is an account with TOTP. A TOTP code is accepted once per 30 s
// time step per account, so each account signs in at most once per step:
// last is the step of its latest sign-in.
type mfaUser struct {
	email, secret string
	last          atomic.Int64
}

// mfaPool hands out accounts that have not signed in during the current
// time step.
type mfaPool struct {
	users []*mfaUser
	next  atomic.Uint64
	// starved counts waits for the next time step with every account used.
	starved atomic.Int64
}

const totpPeriod = 30 // seconds

// take leases an account for the current step and returns the step.
func (p *mfaPool) take(ctx context.Context) (*mfaUser, int64, error) {
	for {
		step := time.Now().Unix() / totpPeriod
		for range len(p.users) {
			u := p.users[p.next.Add(1)%uint64(len(p.users))]
			if old := u.last.Load(); old < step && u.last.CompareAndSwap(old, step) {
				return u, step, nil
			}
		}
		p.starved.Add(1)
		wait := time.Until(time.Unix((step+1)*totpPeriod, 0))
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// seedMFAUsers makes n accounts with a confirmed TOTP. The accounts are
// inserted with SQL, all with one argon2id hash of benchPassword made by
// users.HashPassword (hashing each would take minutes and measure nothing);
// TOTP is enrolled through mfa.TOTP.Begin and Confirm, with the previous
// time step's code so that every current step is still free for signing in.
func (r *runner) seedMFAUsers(ctx context.Context, n int) (*mfaPool, error) {
	hash, err := users.HashPassword(ctx, benchPassword)
	if err != nil {
		return nil, err
	}
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("signin-%05d@bench.example", i)
	}
	rows, err := r.in.pool.Query(ctx, `
		WITH u AS (
			INSERT INTO users (email, name) SELECT e, 'Bench user' FROM unnest($1::text[]) AS e
			RETURNING id, email
		), p AS (
			INSERT INTO password_credentials (user_id, hash) SELECT id, $2 FROM u
		)
		SELECT id::text, email FROM u`, emails, hash)
	if err != nil {
		return nil, fmt.Errorf("bench: seed users: %w", err)
	}
	type row struct{ id, email string }
	var list []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.email); err != nil {
			rows.Close()
			return nil, err
		}
		list = append(list, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bench: seed users: %w", err)
	}
	pool := &mfaPool{users: make([]*mfaUser, len(list))}
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(list) || ctx.Err() != nil {
					return
				}
				secret, err := r.enrollTOTP(ctx, list[i].id, list[i].email)
				if err != nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
					return
				}
				pool.users[i] = &mfaUser{email: list[i].email, secret: secret}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return pool, ctx.Err()
}

// benchEnrollment owns the enrollments the bench makes behind the pages.
const benchEnrollment = "bench-seed"

func (r *runner) enrollTOTP(ctx context.Context, userID, email string) (string, error) {
	totp := r.in.srv.TOTP
	e, err := totp.Begin(ctx, userID, benchEnrollment, email)
	if err != nil {
		return "", fmt.Errorf("bench: enroll totp: %w", err)
	}
	// A step boundary between making the code and checking it makes the
	// previous step's code too old: try once more.
	for attempt := 0; ; attempt++ {
		code := mfa.GenerateCode(e.Secret, time.Now().Add(-totpPeriod*time.Second))
		_, err = totp.Confirm(ctx, userID, benchEnrollment, code)
		if err == nil || attempt == 1 || !errors.Is(err, mfa.ErrInvalidCode) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("bench: confirm totp: %w", err)
	}
	return e.Secret, nil
}
