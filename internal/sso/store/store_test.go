package store_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

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
)

// newStore returns a Store on a fresh database whose only client is "app".
func newStore(t *testing.T) *store.Store {
	t.Helper()
	d := dbtest.New(t)
	return store.New(d.Pool, clientMap{
		testClientID: &fosite.DefaultClient{ID: testClientID, Scopes: []string{"openid", "offline_access"}},
	})
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
		Session: newSession("user-1", testSID),
	}
}

// kind drives one token table through the interface fosite uses for it.
type kind struct {
	name   string
	table  string
	expiry fosite.TokenType
	// Receiver first, so method expressions fit.
	create func(s *store.Store, ctx context.Context, sig string, r fosite.Requester) error
	get    func(s *store.Store, ctx context.Context, sig string, proto fosite.Session) (fosite.Requester, error)
	del    func(s *store.Store, ctx context.Context, sig string) error
}

var kinds = []kind{
	{
		name: "authorize code", table: "oauth_authorize_codes", expiry: fosite.AuthorizeCode,
		create: (*store.Store).CreateAuthorizeCodeSession,
		get:    (*store.Store).GetAuthorizeCodeSession,
		del:    nil, // codes are invalidated, never deleted, by fosite
	},
	{
		name: "pkce", table: "oauth_pkce", expiry: fosite.AuthorizeCode,
		create: (*store.Store).CreatePKCERequestSession,
		get:    (*store.Store).GetPKCERequestSession,
		del:    (*store.Store).DeletePKCERequestSession,
	},
	{
		name: "oidc", table: "oauth_oidc", expiry: fosite.AuthorizeCode,
		create: (*store.Store).CreateOpenIDConnectSession,
		get: func(s *store.Store, ctx context.Context, code string, proto fosite.Session) (fosite.Requester, error) {
			return s.GetOpenIDConnectSession(ctx, code, &fosite.Request{Session: proto})
		},
		del: (*store.Store).DeleteOpenIDConnectSession,
	},
	{
		name: "access token", table: "oauth_access_tokens", expiry: fosite.AccessToken,
		create: (*store.Store).CreateAccessTokenSession,
		get:    (*store.Store).GetAccessTokenSession,
		del:    (*store.Store).DeleteAccessTokenSession,
	},
	{
		name: "refresh token", table: "oauth_refresh_tokens", expiry: fosite.RefreshToken,
		create: func(s *store.Store, ctx context.Context, sig string, r fosite.Requester) error {
			return s.CreateRefreshTokenSession(ctx, sig, "access-of-"+sig, r)
		},
		get: (*store.Store).GetRefreshTokenSession,
		del: (*store.Store).DeleteRefreshTokenSession,
	},
}

// forEachKind runs fn as a subtest per token kind.
func forEachKind(t *testing.T, fn func(t *testing.T, k kind)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k) })
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

// In a Batched context the PKCE and OpenID Connect sessions of the code
// being issued are forms in the code's row; anything else stays a row of
// its own, so nothing is attached to the wrong code or lost with a
// discarded INSERT.
func TestBatched_CodeSessions(t *testing.T) {
	const code = "ory_ac_key.sig-1" // fosite's format: the row is keyed by "sig-1"
	count := func(t *testing.T, s *store.Store) (codes, rows, forms int) {
		t.Helper()
		err := s.Pool.QueryRow(t.Context(), `SELECT
			(SELECT count(*) FROM oauth_authorize_codes),
			(SELECT count(*) FROM oauth_pkce) + (SELECT count(*) FROM oauth_oidc),
			(SELECT count(pkce_form) + count(oidc_form) FROM oauth_authorize_codes)`).Scan(&codes, &rows, &forms)
		if err != nil {
			t.Fatal(err)
		}
		return codes, rows, forms
	}
	store3 := func(t *testing.T, s *store.Store, ctx context.Context, codeReq, pkceReq, oidcReq fosite.Requester) {
		t.Helper()
		if err := s.CreateAuthorizeCodeSession(ctx, "sig-1", codeReq); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePKCERequestSession(ctx, "sig-1", pkceReq); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateOpenIDConnectSession(ctx, code, oidcReq); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("copies of the code's request go in its row", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx, w := s.Batched(t.Context())
		req := newRequest("req-1")
		req.SetSession(newSession("user-1", testSID))
		store3(t, s, ctx, req.Sanitize(nil), req.Sanitize([]string{"code_challenge"}), req.Sanitize([]string{"nonce"}))
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if codes, rows, forms := count(t, s); [3]int{codes, rows, forms} != [3]int{1, 0, 2} {
			t.Fatalf("codes, session rows, forms = %d, %d, %d; want 1, 0, 2", codes, rows, forms)
		}
		// Read one call at a time (an instance of the previous release).
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
		if sub := oidc.GetSession().GetSubject(); sub != "user-1" {
			t.Errorf("OpenID Connect session subject = %q, want the code's", sub)
		}
		for _, del := range []func() error{
			func() error { return s.DeletePKCERequestSession(t.Context(), "sig-1") },
			func() error { return s.DeleteOpenIDConnectSession(t.Context(), code) },
		} {
			if err := del(); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, forms := count(t, s); forms != 0 {
			t.Errorf("%d forms left after the deletes", forms)
		}
	})

	t.Run("another request is a row of its own", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx, w := s.Batched(t.Context())
		req := newRequest("req-1")
		store3(t, s, ctx, req, newRequest("req-2"), newRequest("req-3"))
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if codes, rows, forms := count(t, s); [3]int{codes, rows, forms} != [3]int{1, 2, 0} {
			t.Fatalf("codes, session rows, forms = %d, %d, %d; want 1, 2, 0", codes, rows, forms)
		}
	})

	t.Run("after the code's INSERT was rolled back, rows of their own", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx, w := s.Batched(t.Context())
		req := newRequest("req-1")
		tx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAuthorizeCodeSession(tx, "sig-1", req); err != nil {
			t.Fatal(err)
		}
		if err := s.Rollback(tx); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePKCERequestSession(ctx, "sig-1", req.Sanitize(nil)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if codes, rows, forms := count(t, s); [3]int{codes, rows, forms} != [3]int{0, 1, 0} {
			t.Fatalf("codes, session rows, forms = %d, %d, %d; want 0, 1, 0", codes, rows, forms)
		}
	})
}
