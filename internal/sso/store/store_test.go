package store_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/sso/store"
)

// clientMap is the ClientGetter tests use: clients by id.
type clientMap map[string]fosite.Client

func (m clientMap) GetClient(_ context.Context, id string) (fosite.Client, error) {
	c, ok := m[id]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return c, nil
}

// Fixed instants: the store has no clock of its own (expiry is fosite's
// business), so the test data just has to be stable.
var (
	requestedAt = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	authTime    = requestedAt.Add(-time.Minute)
	expiresAt   = requestedAt.Add(time.Hour)
)

const (
	testClientID = "app"
	testSID      = "6f1c2b0e-3d4a-4f5b-9c8d-7e6f5a4b3c2d"
	testUserID   = "0c9a4f3e-2b1d-4e5f-8a7b-6c5d4e3f2a1b"
)

// newStore returns a Store on a fresh database whose only client is "app",
// with the account testUserID signed in under the live SSO session
// testSID: issuing tokens checks both.
func newStore(t *testing.T) unitStore {
	t.Helper()
	return unitStore{store.New(seeded(t, dbtest.New(t).Pool), clientMap{
		testClientID: &fosite.DefaultClient{ID: testClientID, Scopes: []string{"openid", "offline_access"}},
	})}
}

// seeded adds testUserID and its session testSID to the database of pool.
func seeded(t *testing.T, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	_, err := pool.Exec(t.Context(), `
		WITH u AS (INSERT INTO users (id, email) VALUES ($1, 'alice@example.com'))
		INSERT INTO sso_sessions (id, cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time)
		VALUES ($2, '\x00', $1, '2100-01-01', '2100-01-01', now())`, testUserID, testSID)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// unitStore is the Store as an endpoint uses it: a write called outside a
// unit of work is a unit of its own (store.Pipeline), committed before the
// call returns, where its error surfaces. Inside a unit (BeginTX, or a
// test's own), writes join it, as fosite's do.
type unitStore struct{ *store.Store }

// unit runs fn in ctx's unit, or in a pipeline of its own that it commits.
func (s unitStore) unit(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := db.From(ctx); ok {
		return fn(ctx)
	}
	ctx, u := s.Pipeline(ctx)
	if err := fn(ctx); err != nil {
		u.Rollback(ctx)
		return err
	}
	return u.Commit(ctx)
}

func (s unitStore) CreateAuthorizeCodeSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.CreateAuthorizeCodeSession(ctx, sig, r) })
}
func (s unitStore) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.CreatePKCERequestSession(ctx, sig, r) })
}
func (s unitStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.CreateOpenIDConnectSession(ctx, code, r) })
}
func (s unitStore) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.CreateAccessTokenSession(ctx, sig, r) })
}
func (s unitStore) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.CreateRefreshTokenSession(ctx, sig, accessSig, r) })
}
func (s unitStore) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.InvalidateAuthorizeCodeSession(ctx, code) })
}
func (s unitStore) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.DeletePKCERequestSession(ctx, sig) })
}
func (s unitStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.DeleteOpenIDConnectSession(ctx, code) })
}
func (s unitStore) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.DeleteAccessTokenSession(ctx, sig) })
}
func (s unitStore) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.DeleteRefreshTokenSession(ctx, sig) })
}
func (s unitStore) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.RotateRefreshToken(ctx, requestID, sig) })
}
func (s unitStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.RevokeRefreshToken(ctx, requestID) })
}
func (s unitStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.unit(ctx, func(ctx context.Context) error { return s.Store.RevokeAccessToken(ctx, requestID) })
}

// newSession is the session the server would attach: subject, and the ID
// token claims the SSO layer sets (sid, amr, acr, auth_time).
func newSession(subject, sid string) *openid.DefaultSession {
	extra := map[string]any{}
	if sid != "" {
		extra["sid"] = sid
	}
	return &openid.DefaultSession{
		Subject:  subject,
		Username: "alice@example.com",
		Headers:  &jwt.Headers{},
		Claims: &jwt.IDTokenClaims{
			Subject:                             subject,
			AuthTime:                            authTime,
			AuthenticationMethodsReferences:     []string{"pwd", "otp"},
			AuthenticationContextClassReference: "mfa",
			Extra:                               extra,
		},
		ExpiresAt: map[fosite.TokenType]time.Time{
			fosite.AuthorizeCode: expiresAt,
			fosite.AccessToken:   expiresAt.Add(time.Hour),
			fosite.RefreshToken:  expiresAt.Add(24 * time.Hour),
		},
	}
}

// newRequest is a granted authorization request for requestID.
func newRequest(requestID string, scopes ...string) *fosite.Request {
	if len(scopes) == 0 {
		scopes = []string{"openid", "offline_access"}
	}
	return &fosite.Request{
		ID:                requestID,
		RequestedAt:       requestedAt,
		Client:            &fosite.DefaultClient{ID: testClientID},
		RequestedScope:    fosite.Arguments(scopes),
		GrantedScope:      fosite.Arguments(scopes),
		RequestedAudience: fosite.Arguments{"https://api.example"},
		GrantedAudience:   fosite.Arguments{"https://api.example"},
		Form: url.Values{
			"redirect_uri":          {"https://app.example/cb"},
			"nonce":                 {"n-0S6_WzA2Mj"},
			"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
			"code_challenge_method": {"S256"},
		},
		Session: newSession(testUserID, testSID),
	}
}

// kind drives one token table, or a code's session (a form in the code's
// row), through the interface fosite uses for it.
type kind struct {
	name   string
	table  string // where its row is
	expiry fosite.TokenType
	// Receiver first, so method expressions fit.
	create func(s unitStore, ctx context.Context, sig string, r fosite.Requester) error
	get    func(s unitStore, ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error)
	del    func(s unitStore, ctx context.Context, sig string) error
}

// oidcCode is the code fosite passes to the OpenID Connect storage for the
// code stored under sig (fosite's HMAC format: key.signature).
func oidcCode(sig string) string { return "ory_ac_key." + sig }

var kinds = []kind{
	{
		name: "authorize code", table: "oauth_authorize_codes", expiry: fosite.AuthorizeCode,
		create: unitStore.CreateAuthorizeCodeSession,
		get:    unitStore.GetAuthorizeCodeSession,
		del:    nil, // codes are invalidated, never deleted, by fosite
	},
	{
		// A code's PKCE session is stored with its code, as fosite does.
		name: "pkce", table: "oauth_authorize_codes", expiry: fosite.AuthorizeCode,
		create: func(s unitStore, ctx context.Context, sig string, r fosite.Requester) error {
			return s.unit(ctx, func(ctx context.Context) error {
				if err := s.Store.CreateAuthorizeCodeSession(ctx, sig, r); err != nil {
					return err
				}
				return s.Store.CreatePKCERequestSession(ctx, sig, r)
			})
		},
		get: unitStore.GetPKCERequestSession,
		del: unitStore.DeletePKCERequestSession,
	},
	{
		name: "oidc", table: "oauth_authorize_codes", expiry: fosite.AuthorizeCode,
		create: func(s unitStore, ctx context.Context, sig string, r fosite.Requester) error {
			return s.unit(ctx, func(ctx context.Context) error {
				if err := s.Store.CreateAuthorizeCodeSession(ctx, sig, r); err != nil {
					return err
				}
				return s.Store.CreateOpenIDConnectSession(ctx, oidcCode(sig), r)
			})
		},
		get: func(s unitStore, ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error) {
			return s.GetOpenIDConnectSession(ctx, oidcCode(sig), &fosite.Request{Session: proto})
		},
		del: func(s unitStore, ctx context.Context, sig string) error {
			return s.DeleteOpenIDConnectSession(ctx, oidcCode(sig))
		},
	},
	{
		name: "access token", table: "oauth_access_tokens", expiry: fosite.AccessToken,
		create: unitStore.CreateAccessTokenSession,
		get:    unitStore.GetAccessTokenSession,
		del:    unitStore.DeleteAccessTokenSession,
	},
	{
		name: "refresh token", table: "oauth_refresh_tokens", expiry: fosite.RefreshToken,
		create: func(s unitStore, ctx context.Context, sig string, r fosite.Requester) error {
			return s.CreateRefreshTokenSession(ctx, sig, "access-of-"+sig, r)
		},
		get: unitStore.GetRefreshTokenSession,
		del: unitStore.DeleteRefreshTokenSession,
	},
}

// forEachKind runs fn as a subtest per token kind, each on empty token
// tables (a code and its sessions share a row).
func forEachKind(t *testing.T, s unitStore, fn func(t *testing.T, k kind)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			if _, err := s.Pool.Exec(t.Context(), `TRUNCATE oauth_authorize_codes, oauth_access_tokens, oauth_refresh_tokens`); err != nil {
				t.Fatal(err)
			}
			fn(t, k)
		})
	}
}

// wantRequest fails t unless got is want after a trip through the database.
func wantRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("requester is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	if !got.GetRequestedAt().Equal(want.RequestedAt) {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), want.RequestedAt)
	}
	if got.GetClient() == nil || got.GetClient().GetID() != want.Client.GetID() {
		t.Errorf("Client = %v, want id %q", got.GetClient(), want.Client.GetID())
	}
	eq := func(field string, got, want fosite.Arguments) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	eq("RequestedScopes", got.GetRequestedScopes(), want.RequestedScope)
	eq("GrantedScopes", got.GetGrantedScopes(), want.GrantedScope)
	eq("RequestedAudience", got.GetRequestedAudience(), want.RequestedAudience)
	eq("GrantedAudience", got.GetGrantedAudience(), want.GrantedAudience)
	for k := range want.Form {
		if g, w := got.GetRequestForm().Get(k), want.Form.Get(k); g != w {
			t.Errorf("Form[%q] = %q, want %q", k, g, w)
		}
	}
	wantSession(t, got.GetSession(), want.Session.(*openid.DefaultSession))
}

func wantSession(t *testing.T, got fosite.Session, want *openid.DefaultSession) {
	t.Helper()
	sess, ok := got.(*openid.DefaultSession)
	if !ok {
		t.Fatalf("session is %T, want *openid.DefaultSession", got)
	}
	if sess.Subject != want.Subject || sess.Username != want.Username {
		t.Errorf("session subject/username = %q/%q, want %q/%q", sess.Subject, sess.Username, want.Subject, want.Username)
	}
	if sess.Claims == nil {
		t.Fatal("session claims are nil")
	}
	c, w := sess.Claims, want.Claims
	if c.Subject != w.Subject {
		t.Errorf("claims sub = %q, want %q", c.Subject, w.Subject)
	}
	if !c.AuthTime.Equal(w.AuthTime) {
		t.Errorf("claims auth_time = %v, want %v", c.AuthTime, w.AuthTime)
	}
	if len(c.AuthenticationMethodsReferences) != 2 || c.AuthenticationMethodsReferences[0] != "pwd" || c.AuthenticationMethodsReferences[1] != "otp" {
		t.Errorf("claims amr = %v, want [pwd otp]", c.AuthenticationMethodsReferences)
	}
	if c.AuthenticationContextClassReference != w.AuthenticationContextClassReference {
		t.Errorf("claims acr = %q, want %q", c.AuthenticationContextClassReference, w.AuthenticationContextClassReference)
	}
	if c.Extra["sid"] != w.Extra["sid"] {
		t.Errorf("claims sid = %v, want %v", c.Extra["sid"], w.Extra["sid"])
	}
	for typ, exp := range want.ExpiresAt {
		if !sess.GetExpiresAt(typ).Equal(exp) {
			t.Errorf("session expiry of %s = %v, want %v", typ, sess.GetExpiresAt(typ), exp)
		}
	}
}

// wantErr fails t unless errors.Is(err, target).
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func TestHashSignature(t *testing.T) {
	tests := []struct {
		name string
		sig  string
		want string
	}{
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(store.HashSignature(tt.sig)); got != tt.want {
				t.Errorf("HashSignature(%q) = %s, want %s", tt.sig, got, tt.want)
			}
		})
	}
}

// A code's PKCE and OpenID Connect sessions are forms in the code's row:
// put into its INSERT when they come in the same request while it waits,
// written by an UPDATE otherwise, and never attached to another request's
// code or lost with a discarded INSERT.
func TestStore_CodeSessions(t *testing.T) {
	const code = "ory_ac_key.sig-1" // fosite's format: the row is keyed by "sig-1"
	count := func(t *testing.T, s unitStore) (codes, forms int) {
		t.Helper()
		err := s.Pool.QueryRow(t.Context(), `SELECT count(*), count(pkce_form) + count(oidc_form) FROM oauth_authorize_codes`).
			Scan(&codes, &forms)
		if err != nil {
			t.Fatal(err)
		}
		return codes, forms
	}
	store3 := func(ctx context.Context, s unitStore, codeReq, pkceReq, oidcReq fosite.Requester) error {
		if err := s.Store.CreateAuthorizeCodeSession(ctx, "sig-1", codeReq); err != nil {
			return err
		}
		if err := s.Store.CreatePKCERequestSession(ctx, "sig-1", pkceReq); err != nil {
			return err
		}
		return s.Store.CreateOpenIDConnectSession(ctx, code, oidcReq)
	}
	// rt counts the round trips of fn on a traced pool.
	traced := func(t *testing.T) (unitStore, *dbtest.RoundTrips) {
		pool, trips := dbtest.TracedPool(t, dbtest.New(t).URL)
		return unitStore{store.New(seeded(t, pool), newStore(t).Clients)}, trips
	}

	t.Run("copies of the code's request go into its INSERT", func(t *testing.T) {
		t.Parallel()
		s, trips := traced(t)
		req := newRequest("req-1")
		n := trips.Count(func() {
			err := s.unit(t.Context(), func(ctx context.Context) error {
				return store3(ctx, s, req.Sanitize(nil), req.Sanitize([]string{"code_challenge"}), req.Sanitize([]string{"nonce"}))
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		if codes, forms := count(t, s); codes != 1 || forms != 2 {
			t.Fatalf("codes, forms = %d, %d; want 1, 2", codes, forms)
		}
		if n != 1 {
			t.Errorf("%d round trips, want 1 (the forms travel in the code's INSERT)", n)
		}
		pk, err := s.GetPKCERequestSession(t.Context(), "sig-1", &openid.DefaultSession{})
		if err != nil {
			t.Fatal(err)
		}
		if got := pk.GetRequestForm(); got.Get("code_challenge") == "" || got.Get("nonce") != "" {
			t.Errorf("PKCE form = %v, want the code challenge alone", got)
		}
		oidc, err := s.GetOpenIDConnectSession(t.Context(), code, fosite.NewAccessRequest(&openid.DefaultSession{}))
		if err != nil {
			t.Fatal(err)
		}
		if got := oidc.GetRequestForm(); got.Get("nonce") == "" || got.Get("code_challenge") != "" {
			t.Errorf("OpenID Connect form = %v, want the nonce alone", got)
		}
		if sub := oidc.GetSession().GetSubject(); sub != testUserID {
			t.Errorf("OpenID Connect session subject = %q, want the code's", sub)
		}
		if err := s.DeletePKCERequestSession(t.Context(), "sig-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteOpenIDConnectSession(t.Context(), code); err != nil {
			t.Fatal(err)
		}
		if _, forms := count(t, s); forms != 0 {
			t.Errorf("%d forms left after the deletes", forms)
		}
	})

	t.Run("in a unit of its own, the forms are written into the code's row", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		req := newRequest("req-1")
		if err := s.CreateAuthorizeCodeSession(t.Context(), "sig-1", req); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePKCERequestSession(t.Context(), "sig-1", req.Sanitize([]string{"code_challenge"})); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateOpenIDConnectSession(t.Context(), code, req.Sanitize([]string{"nonce"})); err != nil {
			t.Fatal(err)
		}
		if codes, forms := count(t, s); codes != 1 || forms != 2 {
			t.Fatalf("codes, forms = %d, %d; want 1, 2", codes, forms)
		}
	})

	t.Run("another request's sessions are not put into the code's INSERT", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		err := s.unit(t.Context(), func(ctx context.Context) error {
			return store3(ctx, s, newRequest("req-1"), newRequest("req-2"), newRequest("req-3"))
		})
		if err != nil {
			t.Fatal(err)
		}
		// Written by UPDATEs instead: the forms are those of the requests
		// given, which are not copies of the code's.
		pk, err := s.GetPKCERequestSession(t.Context(), "sig-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if pk.GetID() != "req-1" {
			t.Errorf("PKCE session request id = %q, want the code's", pk.GetID())
		}
	})

	t.Run("no code: no session", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		err := s.unit(t.Context(), func(ctx context.Context) error {
			tx, err := s.BeginTX(ctx)
			if err != nil {
				return err
			}
			if err := s.Store.CreateAuthorizeCodeSession(tx, "sig-1", newRequest("req-1")); err != nil {
				return err
			}
			if err := s.Rollback(tx); err != nil {
				return err
			}
			return s.Store.CreatePKCERequestSession(ctx, "sig-1", newRequest("req-1").Sanitize(nil))
		})
		if err == nil {
			t.Fatal("a PKCE session was stored for a code whose INSERT was rolled back")
		}
		if codes, forms := count(t, s); codes != 0 || forms != 0 {
			t.Fatalf("codes, forms = %d, %d; want none", codes, forms)
		}
	})
}
