package bench

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/idp/idp/internal/mfa"
)

// Scenario names, in the order they run.
const (
	ScenarioClientCredentials = "client_credentials"
	ScenarioPrivateKeyJWT     = "client_credentials_private_key_jwt"
	// ScenarioDPoPClientCredentials is client_credentials with a DPoP
	// proof: the cost of binding a token to a key.
	ScenarioDPoPClientCredentials = "dpop_client_credentials"
	ScenarioIntrospection         = "introspection"
	ScenarioRefresh               = "refresh"
	ScenarioSilentSSO             = "silent_sso"
	ScenarioFullSignIn            = "full_signin"
	ScenarioPasskeySignIn         = "passkey_signin"
	ScenarioRevokeAll             = "revoke_all"
)

// Scenarios lists every scenario.
var Scenarios = []string{ScenarioClientCredentials, ScenarioPrivateKeyJWT, ScenarioDPoPClientCredentials,
	ScenarioIntrospection, ScenarioRefresh, ScenarioSilentSSO, ScenarioFullSignIn, ScenarioPasskeySignIn, ScenarioRevokeAll}

// floorOf is the floor each throughput scenario is measured against.
var floorOf = map[string]string{
	ScenarioClientCredentials:     FloorInsert,
	ScenarioPrivateKeyJWT:         FloorInsert,
	ScenarioDPoPClientCredentials: FloorInsert,
	ScenarioIntrospection:         FloorSelect,
	ScenarioRefresh:               FloorInsert,
	ScenarioSilentSSO:             FloorInsert,
	ScenarioFullSignIn:            FloorArgon2,
	ScenarioPasskeySignIn:         FloorInsert,
}

// describe says in a line what one op of a scenario or floor is.
var describe = map[string]string{
	ScenarioClientCredentials:     "POST /oauth2/token grant_type=client_credentials (client_secret_basic)",
	ScenarioPrivateKeyJWT:         "POST /oauth2/token grant_type=client_credentials, private_key_jwt (a fresh ES256 assertion signed per request)",
	ScenarioDPoPClientCredentials: "POST /oauth2/token grant_type=client_credentials (client_secret_basic) with a fresh ES256 DPoP proof, token_type DPoP",
	ScenarioIntrospection:         "POST /oauth2/introspect of a live access token",
	ScenarioRefresh:               "POST /oauth2/token grant_type=refresh_token, rotating",
	ScenarioSilentSSO:             "signed-in browser: /oauth2/auth for a 2nd app → code → exchange → ID token verified",
	ScenarioFullSignIn:            "new browser: /oauth2/auth → password → TOTP → code → exchange → ID token verified",
	ScenarioPasskeySignIn:         "new browser: /oauth2/auth → sign-in page → passkey options → assertion (software authenticator) → code → exchange → ID token verified",
	ScenarioRevokeAll:             "admin revoke-all of one user's sessions; back-channel logout to every app",
	FloorArgon2:                   "users.HashPassword (argon2id, configured parameters) in GOMAXPROCS goroutines",
	FloorInsert:                   "bare net/http handler: one INSERT of a token row via its own pgxpool",
	FloorSelect:                   "bare net/http handler: one SELECT of a token row by primary key",
}

// clientCredentials asks for a token as the resource server.
func (r *runner) clientCredentials() op {
	tokenURL := r.in.issuer + "/oauth2/token"
	return func(ctx context.Context, _ int) error {
		var t tokenResponse
		err := postForm(ctx, r.hc, tokenURL, r.resource.id, r.resource.secret,
			url.Values{"grant_type": {"client_credentials"}}, &t)
		if err != nil {
			return err
		}
		if t.AccessToken == "" || !strings.EqualFold(t.TokenType, "bearer") {
			return errors.New("client_credentials: no bearer access token in the answer")
		}
		return nil
	}
}

// privateKeyJWT asks for a token as a private_key_jwt client: each
// request signs a fresh assertion (RFC 7523 §2.2), as a client must, since
// a jti is spent once.
func (r *runner) privateKeyJWT() op {
	tokenURL := r.in.issuer + "/oauth2/token"
	return func(ctx context.Context, _ int) error {
		assertion, err := r.signer.assertion(tokenURL)
		if err != nil {
			return err
		}
		var t tokenResponse
		err = postForm(ctx, r.hc, tokenURL, "", "", url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}, &t)
		if err != nil {
			return err
		}
		if t.AccessToken == "" || !strings.EqualFold(t.TokenType, "bearer") {
			return errors.New("client_credentials (private_key_jwt): no bearer access token in the answer")
		}
		return nil
	}
}

// issueTokens gets n client_credentials access tokens for introspection.
func (r *runner) issueTokens(ctx context.Context, n int) ([]string, error) {
	tokenURL := r.in.issuer + "/oauth2/token"
	out := make([]string, 0, n)
	for range n {
		var t tokenResponse
		err := postForm(ctx, r.hc, tokenURL, r.resource.id, r.resource.secret,
			url.Values{"grant_type": {"client_credentials"}}, &t)
		if err != nil {
			return nil, fmt.Errorf("bench: issue tokens: %w", err)
		}
		out = append(out, t.AccessToken)
	}
	return out, nil
}

// introspection asks about one of tokens, as the resource server.
func (r *runner) introspection(tokens []string) op {
	u := r.in.issuer + "/oauth2/introspect"
	return func(ctx context.Context, _ int) error {
		var out struct {
			Active   bool   `json:"active"`
			ClientID string `json:"client_id"`
		}
		tok := tokens[mathrand.IntN(len(tokens))]
		if err := postForm(ctx, r.hc, u, r.resource.id, r.resource.secret, url.Values{"token": {tok}}, &out); err != nil {
			return err
		}
		if !out.Active || out.ClientID != r.resource.id {
			return errors.New("introspection: a live token reported inactive")
		}
		return nil
	}
}

// signedInBrowsers signs n browsers in to app A, each as its own
// password-only account, for the scenarios that need an SSO session.
func (r *runner) signedInBrowsers(ctx context.Context, n int) ([]*browser, error) {
	if len(r.browsers) >= n {
		return r.browsers[:n], nil
	}
	for i := len(r.browsers); i < n; i++ {
		email := fmt.Sprintf("sso-%03d@bench.example", i)
		if _, err := r.createUser(ctx, email, false); err != nil {
			return nil, err
		}
		b := newBrowser(r.in.issuer, r.tr)
		code, req, err := b.signIn(ctx, r.appA, email, benchPassword, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: sign in %s: %w", email, err)
		}
		if _, err := r.appA.exchange(ctx, r.hc, code, req); err != nil {
			return nil, fmt.Errorf("bench: sign in %s: %w", email, err)
		}
		r.browsers = append(r.browsers, b)
	}
	return r.browsers, nil
}

// silentSSO is a signed-in browser starting the code flow for app B, and
// app B exchanging the code and verifying the ID token.
func (r *runner) silentSSO(browsers []*browser) op {
	return func(ctx context.Context, w int) error {
		code, req, err := browsers[w].silentCode(ctx, r.appB)
		if err != nil {
			return fmt.Errorf("silent sso: %w", err)
		}
		_, err = r.appB.exchange(ctx, r.hc, code, req)
		return err
	}
}

// refreshChains gets one refresh token of app B per browser.
func (r *runner) refreshChains(ctx context.Context, browsers []*browser) ([]string, error) {
	out := make([]string, len(browsers))
	for i, b := range browsers {
		code, req, err := b.silentCode(ctx, r.appB)
		if err != nil {
			return nil, fmt.Errorf("bench: refresh setup: %w", err)
		}
		tok, err := r.appB.exchange(ctx, r.hc, code, req)
		if err != nil {
			return nil, fmt.Errorf("bench: refresh setup: %w", err)
		}
		if tok.RefreshToken == "" {
			return nil, errors.New("bench: refresh setup: app B got no refresh token")
		}
		out[i] = tok.RefreshToken
	}
	return out, nil
}

// refresh rotates worker w's refresh token.
func (r *runner) refresh(chains []string) op {
	tokenURL := r.in.issuer + "/oauth2/token"
	return func(ctx context.Context, w int) error {
		var t tokenResponse
		err := postForm(ctx, r.hc, tokenURL, r.appB.id, r.appB.secret,
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {chains[w]}}, &t)
		if err != nil {
			return err
		}
		if t.AccessToken == "" || t.RefreshToken == "" {
			return errors.New("refresh: no access or refresh token in the answer")
		}
		chains[w] = t.RefreshToken
		return nil
	}
}

// fullSignIn is a new browser signing in with password and TOTP to app A,
// and app A exchanging the code and verifying the ID token.
func (r *runner) fullSignIn(pool *mfaPool) op {
	return func(ctx context.Context, _ int) error {
		u, step, err := pool.take(ctx)
		if err != nil {
			return err
		}
		// The code of the leased step: accepted while the provider's clock
		// is within one step of it, and never replayed.
		secret := u.secret
		code := func() string { return codeAt(secret, step) }
		b := newBrowser(r.in.issuer, r.tr)
		c, req, err := b.signIn(ctx, r.appA, u.email, benchPassword, code)
		if err != nil {
			return fmt.Errorf("sign in: %w", err)
		}
		_, err = r.appA.exchange(ctx, r.hc, c, req)
		return err
	}
}

func codeAt(secret string, step int64) string {
	return mfa.GenerateCode(secret, time.Unix(step*totpPeriod+totpPeriod/2, 0))
}
