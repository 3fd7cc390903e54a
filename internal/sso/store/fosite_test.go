package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/store"
)

// The conformance cases pin the storage contract; these drive fosite's own
// handlers over it, so a contract fosite does not actually rely on (or one
// it relies on that we missed) shows up here.

const (
	redirectURI = "https://app.example/cb"
	verifier    = "a-code-verifier-that-is-long-enough-for-pkce-0123456789"
)

type provider struct {
	fosite.OAuth2Provider
	store *store.Store
	trips *dbtest.RoundTrips
}

func newProvider(t *testing.T) *provider {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	getKey := func(context.Context) (any, error) { return key, nil }
	cfg := &fosite.Config{
		GlobalSecret:          []byte("a-32-byte-global-secret-for-hmac"),
		AccessTokenLifespan:   time.Hour,
		RefreshTokenLifespan:  24 * time.Hour,
		AuthorizeCodeLifespan: 10 * time.Minute,
		IDTokenLifespan:       time.Hour,
		IDTokenIssuer:         "https://idp.example",
		EnforcePKCE:           true,
		SanitationWhiteList:   []string{"redirect_uri"},
	}
	client := &fosite.DefaultClient{
		ID:            testClientID,
		Public:        true,
		RedirectURIs:  []string{redirectURI},
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"},
		Scopes:        []string{"openid", "offline_access"},
	}
	pool, trips := dbtest.TracedPool(t, dbtest.New(t).URL)
	s := store.New(seeded(t, pool), clientMap{testClientID: client})
	p := compose.Compose(cfg, s, &compose.CommonStrategy{
		CoreStrategy:               compose.NewOAuth2HMACStrategy(cfg),
		OpenIDConnectTokenStrategy: compose.NewOpenIDConnectStrategy(getKey, cfg),
		Signer:                     &jwt.DefaultSigner{GetPrivateKey: getKey},
	},
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
	)
	return &provider{OAuth2Provider: p, store: s, trips: trips}
}

// begin returns the context an endpoint runs in and what it calls before
// answering, as sso.Provider does: the request's unit, and its commit.
func (p *provider) begin(ctx context.Context) (context.Context, func(context.Context) error) {
	ctx, u := p.store.Pipeline(ctx)
	return ctx, u.Commit
}

// authorize runs the authorization endpoint for a signed-in user and
// returns the code.
func (p *provider) authorize(t *testing.T) string {
	t.Helper()
	return p.authorizeIn(t, testSID, "openid offline_access")
}

// authorizeIn is authorize in the SSO session sid, granting scope.
func (p *provider) authorizeIn(t *testing.T, sid, scope string) string {
	t.Helper()
	ctx, flush := p.begin(t.Context())
	challenge := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {testClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {"state-0123456789"},
		"nonce":                 {"nonce-0123456789"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	ar, err := p.NewAuthorizeRequest(ctx, httptest.NewRequest(http.MethodGet, "https://idp.example/oauth2/auth?"+q.Encode(), nil))
	if err != nil {
		t.Fatalf("authorize request: %v", err)
	}
	for _, sc := range strings.Fields(scope) {
		ar.GrantScope(sc)
	}
	sess := newSession(testUserID, sid)
	sess.ExpiresAt = nil
	sess.Claims.AuthTime = time.Now().UTC().Truncate(time.Second)
	resp, err := p.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		t.Fatalf("authorize response: %v", err)
	}
	if err := flush(ctx); err != nil {
		t.Fatalf("authorize: flush: %v", err)
	}
	return resp.GetCode()
}

type tokens struct{ access, refresh, idToken string }

// token calls the token endpoint with form, flushing on every path as
// sso.Provider does.
func (p *provider) token(ctx context.Context, form url.Values) (tokens, error) {
	ctx, flush := p.begin(ctx)
	form.Set("client_id", testClientID)
	r := httptest.NewRequest(http.MethodPost, "https://idp.example/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := p.NewAccessRequest(ctx, r, &openid.DefaultSession{})
	if err != nil {
		return tokens{}, errors.Join(err, flush(ctx))
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if ferr := flush(ctx); err == nil && ferr != nil {
		return tokens{}, ferr
	}
	if err != nil {
		return tokens{}, err
	}
	refresh, _ := resp.GetExtra("refresh_token").(string)
	idToken, _ := resp.GetExtra("id_token").(string)
	return tokens{access: resp.GetAccessToken(), refresh: refresh, idToken: idToken}, nil
}

func (p *provider) exchange(ctx context.Context, code string) (tokens, error) {
	return p.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
}

func (p *provider) refresh(ctx context.Context, refresh string) (tokens, error) {
	return p.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
}

// active reports whether introspection accepts an access token.
func (p *provider) active(t *testing.T, access string) bool {
	t.Helper()
	_, _, err := p.IntrospectToken(t.Context(), access, fosite.AccessToken, &openid.DefaultSession{})
	return err == nil
}

// twiceAtOnce runs fn in two goroutines at once and returns their errors.
func twiceAtOnce(fn func() error) [2]error {
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	for i := range errs {
		wg.Go(func() { errs[i] = fn() })
	}
	wg.Wait()
	return errs
}

func TestStore_Fosite(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, p *provider)
	}{
		{"code exchange", func(t *testing.T, p *provider) {
			tok, err := p.exchange(t.Context(), p.authorize(t))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.access == "" || tok.refresh == "" || tok.idToken == "" {
				t.Fatalf("tokens = %+v, want access, refresh and ID token", tok)
			}
			if !p.active(t, tok.access) {
				t.Error("access token inactive")
			}
			var sid string
			var offline bool
			err = p.store.Pool.QueryRow(t.Context(), `SELECT sid::text, offline FROM oauth_refresh_tokens`).Scan(&sid, &offline)
			if err != nil {
				t.Fatal(err)
			}
			if sid != testSID || !offline {
				t.Errorf("refresh token sid, offline = %s, %v; want %s, true", sid, offline, testSID)
			}
		}},
		{"wrong redirect_uri", func(t *testing.T, p *provider) {
			_, err := p.token(t.Context(), url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {p.authorize(t)},
				"redirect_uri":  {"https://evil.example/cb"},
				"code_verifier": {verifier},
			})
			if !errors.Is(err, fosite.ErrInvalidGrant) {
				t.Errorf("err = %v, want invalid_grant", err)
			}
		}},
		{"wrong code_verifier spends the code's PKCE session", func(t *testing.T, p *provider) {
			code := p.authorize(t)
			_, err := p.token(t.Context(), url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {code},
				"redirect_uri":  {redirectURI},
				"code_verifier": {"another-code-verifier-that-is-long-enough-0123456789"},
			})
			if !errors.Is(err, fosite.ErrInvalidGrant) {
				t.Errorf("err = %v, want invalid_grant", err)
			}
			// No second guess: the failed request's delete went out too.
			if _, err := p.exchange(t.Context(), code); !errors.Is(err, fosite.ErrInvalidGrant) {
				t.Errorf("exchange with the right verifier after a wrong one: %v, want invalid_grant", err)
			}
		}},
		{"code reuse revokes its tokens", func(t *testing.T, p *provider) {
			code := p.authorize(t)
			tok, err := p.exchange(t.Context(), code)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if _, err := p.exchange(t.Context(), code); !errors.Is(err, fosite.ErrInvalidGrant) {
				t.Errorf("second exchange: %v, want invalid_grant", err)
			}
			if p.active(t, tok.access) {
				t.Error("access token from a reused code still active")
			}
			if _, err := p.refresh(t.Context(), tok.refresh); err == nil {
				t.Error("refresh token from a reused code still works")
			}
		}},
		{"refresh rotates, reuse revokes the grant", func(t *testing.T, p *provider) {
			first, err := p.exchange(t.Context(), p.authorize(t))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			second, err := p.refresh(t.Context(), first.refresh)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if p.active(t, first.access) {
				t.Error("access token of the rotated refresh token still active")
			}
			if !p.active(t, second.access) {
				t.Fatal("new access token inactive")
			}
			if _, err := p.refresh(t.Context(), first.refresh); !errors.Is(err, fosite.ErrInvalidGrant) {
				t.Fatalf("reuse: %v, want invalid_grant", err)
			}
			if p.active(t, second.access) {
				t.Error("access token still active after refresh token reuse")
			}
			if _, err := p.refresh(t.Context(), second.refresh); err == nil {
				t.Error("refresh token still works after reuse of its predecessor")
			}
		}},
		{"revocation", func(t *testing.T, p *provider) {
			tok, err := p.exchange(t.Context(), p.authorize(t))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			form := url.Values{"token": {tok.refresh}, "client_id": {testClientID}}
			r := httptest.NewRequest(http.MethodPost, "https://idp.example/oauth2/revoke", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			ctx, commit := p.begin(t.Context())
			if err := errors.Join(p.NewRevocationRequest(ctx, r), commit(ctx)); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if p.active(t, tok.access) {
				t.Error("access token active after revocation")
			}
			if _, err := p.refresh(t.Context(), tok.refresh); err == nil {
				t.Error("revoked refresh token still works")
			}
		}},
		{"round trips", func(t *testing.T, p *provider) {
			var (
				code     string
				tok, ref tokens
				err      error
			)
			authorize := p.trips.Count(func() { code = p.authorize(t) })
			exchange := p.trips.Count(func() { tok, err = p.exchange(t.Context(), code) })
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			refresh := p.trips.Count(func() { ref, err = p.refresh(t.Context(), tok.refresh) })
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if ref.idToken == "" || !p.active(t, ref.access) {
				t.Fatalf("refresh gave %+v; want an active access token and an ID token", ref)
			}
			// The counts store.Pipeline promises (fosite calling the store
			// one statement at a time made 3, 11 and 6).
			if got, want := [3]int64{authorize, exchange, refresh}, [3]int64{1, 2, 2}; got != want {
				t.Errorf("round trips (authorize, exchange, refresh) = %v, want %v", got, want)
			}
			if forms := p.codeSessions(t); forms != 0 {
				t.Errorf("%d PKCE and OpenID Connect sessions left after the exchange, want 0", forms)
			}
		}},
		{"a code's PKCE and OpenID Connect sessions", func(t *testing.T, p *provider) {
			code := p.authorize(t)
			if forms := p.codeSessions(t); forms != 2 {
				t.Errorf("after authorize: %d forms in the code's row, want 2", forms)
			}
			p.exchangeLeavingNoSessions(t, code)
		}},
		{"concurrent exchanges of one code", func(t *testing.T, p *provider) {
			code := p.authorize(t)
			errs := twiceAtOnce(func() error {
				_, err := p.exchange(t.Context(), code)
				return err
			})
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Fatalf("errors = %v, %v; want exactly one exchange to succeed", errs[0], errs[1])
			}
			// The loser's tokens were rolled back with its failed check (or,
			// if it came second, revoked as a reuse): none survives but the
			// winner's, or none at all.
			var access, refresh int
			if err := p.store.Pool.QueryRow(t.Context(), `SELECT
				(SELECT count(*) FROM oauth_access_tokens),
				(SELECT count(*) FROM oauth_refresh_tokens WHERE active)`).Scan(&access, &refresh); err != nil {
				t.Fatal(err)
			}
			if access > 1 || refresh > 1 {
				t.Errorf("%d access and %d refresh tokens for one code, want at most 1 each", access, refresh)
			}
		}},
		{"concurrent refreshes", func(t *testing.T, p *provider) {
			tok, err := p.exchange(t.Context(), p.authorize(t))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			errs := twiceAtOnce(func() error {
				_, err := p.refresh(t.Context(), tok.refresh)
				return err
			})
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Errorf("errors = %v, %v; want exactly one refresh to succeed", errs[0], errs[1])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newProvider(t))
		})
	}
}

// exchangeLeavingNoSessions exchanges code, checks that the ID token carries
// the authorization request's nonce (from its OpenID Connect session), and
// that none of the code's sessions is left, as a row or as a form.
func (p *provider) exchangeLeavingNoSessions(t *testing.T, code string) {
	t.Helper()
	tok, err := p.exchange(t.Context(), code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if nonce := idTokenClaim(t, tok.idToken, "nonce"); nonce != "nonce-0123456789" {
		t.Errorf("ID token nonce = %v, want the authorization request's", nonce)
	}
	if forms := p.codeSessions(t); forms != 0 {
		t.Errorf("after the exchange: %d sessions left, want none", forms)
	}
}

// codeSessions counts the PKCE and OpenID Connect sessions, the forms in
// the codes' rows.
func (p *provider) codeSessions(t *testing.T) (forms int) {
	t.Helper()
	err := p.store.Pool.QueryRow(t.Context(), `SELECT count(pkce_form) + count(oidc_form) FROM oauth_authorize_codes`).Scan(&forms)
	if err != nil {
		t.Fatal(err)
	}
	return forms
}

// idTokenClaim is one claim of an ID token, read without verifying it (the
// signature is fosite's business here).
func idTokenClaim(t *testing.T, idToken, name string) any {
	t.Helper()
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token %q is not a JWS", idToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims[name]
}

// TestStore_RevocationRacesIssuance: an administrator's revoke-all while an
// app refreshes in a loop leaves no live token, however the two interleave.
// Issuance used to commit new tokens on a session already revoked (a chain
// that then rotated for 30 days), and the two locked refresh and access
// tokens in opposite orders (a deadlock that left every chain alive).
func TestStore_RevocationRacesIssuance(t *testing.T) {
	p := newProvider(t)
	ctx := t.Context()
	m := &sessions.Manager{Pool: p.store.Pool, Now: time.Now, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	const reps = 200
	for rep := range reps {
		// Half the grants are bound to their session, half are
		// offline_access grants, which only an administrator's revoke-all
		// (IncludeOffline) ends.
		scope := "openid"
		if rep%2 == 1 {
			scope = "openid offline_access"
		}
		sid := uuid.NewString()
		if _, err := p.store.Pool.Exec(ctx, `INSERT INTO sso_sessions (id, cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time)
			VALUES ($1, $2, $3, now() + interval '1 hour', now() + interval '1 hour', now())`, sid, []byte(sid), testUserID); err != nil {
			t.Fatal(err)
		}
		tok, err := p.exchange(ctx, p.authorizeIn(t, sid, scope))
		if err != nil {
			t.Fatalf("rep %d: exchange: %v", rep, err)
		}
		stopped := make(chan int)
		go func() {
			// Refresh until refused: after the revocation every refresh
			// must fail.
			n, current := 0, tok.refresh
			for {
				next, err := p.refresh(ctx, current)
				if err != nil {
					stopped <- n
					return
				}
				n, current = n+1, next.refresh
			}
		}()
		time.Sleep(time.Duration(rep%5) * time.Millisecond)
		if _, err := m.Revoke(ctx, sessions.Revocation{UserID: testUserID, Reason: sessions.ReasonAdminRevoke, IncludeOffline: true}); err != nil {
			t.Fatalf("rep %d: revoke-all: %v", rep, err)
		}
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatalf("rep %d: refreshes still succeed 10s after the revocation", rep)
		}
		var refresh, access int
		if err := p.store.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM oauth_refresh_tokens WHERE active),
			(SELECT count(*) FROM oauth_access_tokens)`).Scan(&refresh, &access); err != nil {
			t.Fatal(err)
		}
		if refresh != 0 || access != 0 {
			t.Fatalf("rep %d (%s): %d active refresh and %d access tokens outlived the revoke-all", rep, scope, refresh, access)
		}
	}
}
