package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/store"
)

// conformance is what fosite relies on from its storage, one case per
// behaviour, in the manner of dex's storage/conformance. Each case gets a
// Store on a fresh database.
var conformance = []struct {
	name string
	run  func(t *testing.T, s unitStore)
}{
	{"round trip", testRoundTrip},
	{"form secrets not persisted", testFormSecrets},
	{"unknown signature", testUnknownSignature},
	{"delete", testDelete},
	{"columns", testColumns},
	{"sid null when absent or not a uuid", testSIDNull},
	{"expires_at null when unset", testExpiresAtNull},
	{"offline only with offline_access", testOffline},
	{"pkce challenge read back", testPKCE},
	{"oidc session keyed by code hash", testOIDCKey},
	{"nil session prototype", testNilPrototype},
	{"unknown client", testUnknownClient},
	{"get client", testGetClient},
	{"invalidated authorize code", testInvalidatedCode},
	{"refresh token reuse", testRefreshReuse},
	{"revoke by request id", testRevoke},
	{"rollback", testRollback},
	{"commit", testCommit},
	{"commit and rollback need a transaction", testNoTransaction},
	{"nested in an outer transaction", testNested},
	{"concurrent refreshes of one token", testConcurrentRefresh},
	{"concurrent exchanges of one code", testConcurrentExchange},
	{"serialization failure", testSerializationFailure},
	{"no code exchange on an ended session", testExchangeEndedSession},
	{"no refresh on an ended session", testRefreshEndedSession},
	{"access tokens die with their session's timeout", testAccessTokenSessionTimeout},
	{"a revocation waits for issuance in flight and ends its tokens", testRevocationWaitsForIssuance},
	{"client assertion jti", testJTI},
	{"expired client assertion jti", testExpiredJTI},
	{"client assertion jti in concurrent requests", testJTIPipelined},
}

func TestStore_Conformance(t *testing.T) {
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t))
		})
	}
}

func testRoundTrip(t *testing.T, s unitStore) {
	forEachKind(t, s, func(t *testing.T, k kind) {
		ctx := t.Context()
		want := newRequest("req-1")
		if err := k.create(s, ctx, "sig-1", want); err != nil {
			t.Fatalf("create: %v", err)
		}
		got, err := k.get(s, ctx, "sig-1", &openid.DefaultSession{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		wantRequest(t, got, want)
	})
}

func testFormSecrets(t *testing.T, s unitStore) {
	secrets := map[string]string{
		"client_secret":    "client-secret-value",
		"client_assertion": "client-assertion-value",
		"password":         "password-value",
		"code":             "code-value",
		"refresh_token":    "refresh-token-value",
		"code_verifier":    "code-verifier-value",
		"token":            "token-value",
	}
	forEachKind(t, s, func(t *testing.T, k kind) {
		ctx := t.Context()
		req := newRequest("req-1")
		for name, v := range secrets {
			req.Form.Set(name, v)
		}
		if err := k.create(s, ctx, "sig-1", req); err != nil {
			t.Fatalf("create: %v", err)
		}
		if req.Form.Get("client_secret") == "" {
			t.Error("create modified the caller's form")
		}
		got, err := k.get(s, ctx, "sig-1", nil)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		for name := range secrets {
			if got.GetRequestForm().Has(name) {
				t.Errorf("form parameter %q was persisted", name)
			}
		}
		if got.GetRequestForm().Get("redirect_uri") != "https://app.example/cb" {
			t.Errorf("redirect_uri = %q, want it kept", got.GetRequestForm().Get("redirect_uri"))
		}
		var doc string
		if err := s.Pool.QueryRow(ctx, `SELECT row_to_json(t)::text FROM `+k.table+` t`).Scan(&doc); err != nil {
			t.Fatal(err)
		}
		for name, v := range secrets {
			if strings.Contains(doc, v) {
				t.Errorf("stored request contains the %s value", name)
			}
		}
	})
}

func testUnknownSignature(t *testing.T, s unitStore) {
	forEachKind(t, s, func(t *testing.T, k kind) {
		got, err := k.get(s, t.Context(), "no-such-signature", &openid.DefaultSession{})
		wantErr(t, err, fosite.ErrNotFound)
		if got != nil {
			t.Errorf("requester = %v, want nil", got)
		}
	})
}

func testDelete(t *testing.T, s unitStore) {
	forEachKind(t, s, func(t *testing.T, k kind) {
		if k.del == nil {
			t.Skip("fosite never deletes this kind")
		}
		ctx := t.Context()
		if err := k.create(s, ctx, "sig-1", newRequest("req-1")); err != nil {
			t.Fatalf("create: %v", err)
		}
		if err := k.create(s, ctx, "sig-2", newRequest("req-1")); err != nil {
			t.Fatalf("create: %v", err)
		}
		if err := k.del(s, ctx, "sig-1"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err := k.get(s, ctx, "sig-1", nil)
		wantErr(t, err, fosite.ErrNotFound)
		if _, err := k.get(s, ctx, "sig-2", nil); err != nil {
			t.Errorf("other token of the request: %v", err)
		}
		if err := k.del(s, ctx, "sig-1"); err != nil {
			t.Errorf("second delete: %v, want nil", err)
		}
	})
}

// tokenRow is the columns other packages query.
type tokenRow struct {
	requestID, clientID, subject string
	sid                          *string
	active                       bool
	expiresAt                    *time.Time
}

func readRow(t *testing.T, s unitStore, table, sig string) tokenRow {
	t.Helper()
	var r tokenRow
	err := s.Pool.QueryRow(t.Context(),
		`SELECT request_id, client_id, subject, sid::text, active, expires_at FROM `+table+` WHERE signature_hash = $1`,
		store.HashSignature(sig)).Scan(&r.requestID, &r.clientID, &r.subject, &r.sid, &r.active, &r.expiresAt)
	if err != nil {
		t.Fatalf("read %s row: %v", table, err)
	}
	return r
}

func testColumns(t *testing.T, s unitStore) {
	forEachKind(t, s, func(t *testing.T, k kind) {
		ctx := t.Context()
		req := newRequest("req-1")
		if err := k.create(s, ctx, "sig-1", req); err != nil {
			t.Fatalf("create: %v", err)
		}
		r := readRow(t, s, k.table, "sig-1")
		if r.requestID != "req-1" || r.clientID != testClientID || r.subject != testUserID || !r.active {
			t.Errorf("request_id, client_id, subject, active = %q, %q, %q, %v; want req-1, %s, %s, true",
				r.requestID, r.clientID, r.subject, r.active, testClientID, testUserID)
		}
		if r.sid == nil || *r.sid != testSID {
			t.Errorf("sid = %v, want %s", r.sid, testSID)
		}
		want := req.Session.GetExpiresAt(k.expiry)
		if r.expiresAt == nil || !r.expiresAt.Equal(want) {
			t.Errorf("expires_at = %v, want %v", r.expiresAt, want)
		}
	})
	t.Run("refresh token extras", func(t *testing.T) {
		ctx := t.Context()
		if err := s.CreateRefreshTokenSession(ctx, "rt-x", "at-x", newRequest("req-x")); err != nil {
			t.Fatal(err)
		}
		var accessHash []byte
		var offline bool
		err := s.Pool.QueryRow(ctx, `SELECT access_signature_hash, offline FROM oauth_refresh_tokens WHERE signature_hash = $1`,
			store.HashSignature("rt-x")).Scan(&accessHash, &offline)
		if err != nil {
			t.Fatal(err)
		}
		if string(accessHash) != string(store.HashSignature("at-x")) {
			t.Errorf("access_signature_hash = %x, want hash of at-x", accessHash)
		}
		if !offline {
			t.Error("offline = false for a grant with offline_access")
		}
	})
}

func testSIDNull(t *testing.T, s unitStore) {
	tests := []struct {
		name string
		sid  any // nil: no sid claim
	}{
		{"absent", nil},
		{"not a uuid", "not-a-uuid"},
		{"not a string", 42},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(fmt.Sprint("req-", i))
			sess := req.Session.(*openid.DefaultSession)
			delete(sess.Claims.Extra, "sid")
			if tt.sid != nil {
				sess.Claims.Extra["sid"] = tt.sid
			}
			sig := fmt.Sprint("at-", i)
			if err := s.CreateAccessTokenSession(t.Context(), sig, req); err != nil {
				t.Fatalf("create: %v", err)
			}
			if r := readRow(t, s, "oauth_access_tokens", sig); r.sid != nil {
				t.Errorf("sid = %q, want NULL", *r.sid)
			}
		})
	}
}

func testExpiresAtNull(t *testing.T, s unitStore) {
	req := newRequest("req-1")
	req.Session.(*openid.DefaultSession).ExpiresAt = nil
	if err := s.CreateRefreshTokenSession(t.Context(), "rt-1", "at-1", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	if r := readRow(t, s, "oauth_refresh_tokens", "rt-1"); r.expiresAt != nil {
		t.Errorf("expires_at = %v, want NULL", r.expiresAt)
	}
}

func testOffline(t *testing.T, s unitStore) {
	tests := []struct {
		scopes []string
		want   bool
	}{
		{[]string{"openid", "offline_access"}, true},
		{[]string{"openid", "offline"}, false},
		{[]string{"openid"}, false},
	}
	for i, tt := range tests {
		t.Run(strings.Join(tt.scopes, " "), func(t *testing.T) {
			sig := fmt.Sprint("rt-", i)
			if err := s.CreateRefreshTokenSession(t.Context(), sig, "at", newRequest("req", tt.scopes...)); err != nil {
				t.Fatalf("create: %v", err)
			}
			var offline bool
			if err := s.Pool.QueryRow(t.Context(), `SELECT offline FROM oauth_refresh_tokens WHERE signature_hash = $1`,
				store.HashSignature(sig)).Scan(&offline); err != nil {
				t.Fatal(err)
			}
			if offline != tt.want {
				t.Errorf("offline = %v, want %v", offline, tt.want)
			}
		})
	}
}

// testPKCE stores what fosite's PKCE handler stores (a sanitised request)
// and reads the challenge back as the handler does.
func testPKCE(t *testing.T, s unitStore) {
	ctx := t.Context()
	req := newRequest("req-1").Sanitize([]string{"code_challenge", "code_challenge_method"})
	err := s.unit(ctx, func(ctx context.Context) error {
		if err := s.Store.CreateAuthorizeCodeSession(ctx, "code-sig", req); err != nil {
			return err
		}
		return s.Store.CreatePKCERequestSession(ctx, "code-sig", req)
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := s.GetPKCERequestSession(ctx, "code-sig", &openid.DefaultSession{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	form := got.GetRequestForm()
	if form.Get("code_challenge") != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" || form.Get("code_challenge_method") != "S256" {
		t.Errorf("challenge, method = %q, %q", form.Get("code_challenge"), form.Get("code_challenge_method"))
	}
}

// testOIDCKey checks the raw authorization code, which fosite passes to the
// OpenID Connect storage, is not stored: the session is the form in the
// row of the code, which is keyed by the hash of the code's signature.
func testOIDCKey(t *testing.T, s unitStore) {
	ctx := t.Context()
	const code = "raw-authorization-code.with-its-signature"
	req := newRequest("req-1").Sanitize([]string{"nonce", "redirect_uri"})
	err := s.unit(ctx, func(ctx context.Context) error {
		if err := s.Store.CreateAuthorizeCodeSession(ctx, "with-its-signature", req); err != nil {
			return err
		}
		return s.Store.CreateOpenIDConnectSession(ctx, code, req)
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var n int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_authorize_codes WHERE signature_hash = $1 AND oidc_form IS NOT NULL`,
		store.HashSignature("with-its-signature")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d code rows with the session under the signature's hash, want 1", n)
	}
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_authorize_codes t WHERE row_to_json(t)::text LIKE '%' || $1 || '%'`,
		"raw-authorization-code").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the raw code is in the stored row")
	}
	tokenRequest := fosite.NewAccessRequest(&openid.DefaultSession{})
	got, err := s.GetOpenIDConnectSession(ctx, code, tokenRequest)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetRequestForm().Get("nonce") != "n-0S6_WzA2Mj" {
		t.Errorf("nonce = %q, want it kept", got.GetRequestForm().Get("nonce"))
	}
	wantSession(t, got.GetSession(), newSession(testUserID, testSID))
}

// testNilPrototype: fosite's revocation handler looks tokens up with a nil
// session.
func testNilPrototype(t *testing.T, s unitStore) {
	forEachKind(t, s, func(t *testing.T, k kind) {
		ctx := t.Context()
		want := newRequest("req-1")
		if err := k.create(s, ctx, "sig-1", want); err != nil {
			t.Fatalf("create: %v", err)
		}
		got, err := k.get(s, ctx, "sig-1", nil)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		wantRequest(t, got, want)
	})
}

// testUnknownClient: a token of a deleted client is as good as gone.
func testUnknownClient(t *testing.T, s unitStore) {
	ctx := t.Context()
	req := newRequest("req-1")
	req.Client = &fosite.DefaultClient{ID: "deleted-app"}
	if err := s.CreateAccessTokenSession(ctx, "at-1", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	_, err := s.GetAccessTokenSession(ctx, "at-1", nil)
	wantErr(t, err, fosite.ErrNotFound)
}

func testGetClient(t *testing.T, s unitStore) {
	c, err := s.GetClient(t.Context(), testClientID)
	if err != nil || c.GetID() != testClientID {
		t.Errorf("GetClient(%q) = %v, %v", testClientID, c, err)
	}
	_, err = s.GetClient(t.Context(), "nope")
	wantErr(t, err, fosite.ErrNotFound)
}

func testInvalidatedCode(t *testing.T, s unitStore) {
	ctx := t.Context()
	if err := s.CreateAuthorizeCodeSession(ctx, "code-1", newRequest("req-1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
		t.Fatalf("invalidate: %v", err)
	}
	got, err := s.GetAuthorizeCodeSession(ctx, "code-1", &openid.DefaultSession{})
	wantErr(t, err, fosite.ErrInvalidatedAuthorizeCode)
	if got == nil || got.GetID() != "req-1" {
		t.Fatalf("requester = %v, want req-1 alongside the error", got)
	}
	wantRequest(t, got, newRequest("req-1"))

	wantErr(t, s.InvalidateAuthorizeCodeSession(ctx, "code-1"), fosite.ErrInvalidatedAuthorizeCode)
	// An unknown code is refused like a used one: fosite reports either as a
	// server error, so the statement does not tell them apart.
	wantErr(t, s.InvalidateAuthorizeCodeSession(ctx, "no-such-code"), fosite.ErrInvalidatedAuthorizeCode)
}

func testRefreshReuse(t *testing.T, s unitStore) {
	ctx := t.Context()
	req := newRequest("req-1")
	for _, sig := range []string{"at-1", "at-2"} {
		if err := s.CreateAccessTokenSession(ctx, sig, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	got, err := s.GetRefreshTokenSession(ctx, "rt-1", &openid.DefaultSession{})
	wantErr(t, err, fosite.ErrInactiveToken)
	if got == nil || got.GetID() != "req-1" {
		t.Fatalf("requester = %v, want req-1 alongside the error", got)
	}
	_, err = s.GetAccessTokenSession(ctx, "at-1", nil)
	wantErr(t, err, fosite.ErrNotFound)
	if _, err := s.GetAccessTokenSession(ctx, "at-2", nil); err != nil {
		t.Errorf("access token not issued with the rotated refresh token: %v, want kept", err)
	}
	wantErr(t, s.RotateRefreshToken(ctx, "req-1", "rt-1"), fosite.ErrInactiveToken)
	wantErr(t, s.RotateRefreshToken(ctx, "req-1", "no-such-token"), fosite.ErrInactiveToken)
}

func testRevoke(t *testing.T, s unitStore) {
	ctx := t.Context()
	for _, id := range []string{"req-a", "req-b"} {
		req := newRequest(id)
		if err := s.CreateAccessTokenSession(ctx, id+"-at", req); err != nil {
			t.Fatal(err)
		}
		for _, rt := range []string{id + "-rt1", id + "-rt2"} {
			if err := s.CreateRefreshTokenSession(ctx, rt, id+"-at", req); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.RevokeAccessToken(ctx, "req-a"); err != nil {
		t.Fatalf("revoke access: %v", err)
	}
	if err := s.RevokeRefreshToken(ctx, "req-a"); err != nil {
		t.Fatalf("revoke refresh: %v", err)
	}
	_, err := s.GetAccessTokenSession(ctx, "req-a-at", nil)
	wantErr(t, err, fosite.ErrNotFound)
	for _, rt := range []string{"req-a-rt1", "req-a-rt2"} {
		got, err := s.GetRefreshTokenSession(ctx, rt, nil)
		wantErr(t, err, fosite.ErrInactiveToken)
		if got == nil || got.GetID() != "req-a" {
			t.Errorf("%s: requester = %v, want req-a", rt, got)
		}
	}
	for _, sig := range []string{"req-b-rt1", "req-b-rt2"} {
		if _, err := s.GetRefreshTokenSession(ctx, sig, nil); err != nil {
			t.Errorf("other request's %s: %v", sig, err)
		}
	}
	if _, err := s.GetAccessTokenSession(ctx, "req-b-at", nil); err != nil {
		t.Errorf("other request's access token: %v", err)
	}
	if err := s.RevokeAccessToken(ctx, "no-such-request"); err != nil {
		t.Errorf("revoke access of unknown request: %v", err)
	}
	if err := s.RevokeRefreshToken(ctx, "no-such-request"); err != nil {
		t.Errorf("revoke refresh of unknown request: %v", err)
	}
}

func testRollback(t *testing.T, s unitStore) {
	ctx := t.Context()
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := s.CreateAccessTokenSession(txCtx, "at-1", newRequest("req-1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.Rollback(txCtx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if err := s.Commit(txCtx); err != nil { // fosite's rollback, then the endpoint's commit
		t.Fatalf("commit after rollback: %v", err)
	}
	_, err = s.GetAccessTokenSession(ctx, "at-1", nil)
	wantErr(t, err, fosite.ErrNotFound)
	// fosite may roll back a transaction that is already over.
	if err := s.Rollback(txCtx); err != nil {
		t.Errorf("second rollback: %v, want nil", err)
	}
}

func testCommit(t *testing.T, s unitStore) {
	ctx := t.Context()
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := s.CreateAccessTokenSession(txCtx, "at-1", newRequest("req-1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	_, err = s.GetAccessTokenSession(ctx, "at-1", nil)
	wantErr(t, err, fosite.ErrNotFound) // not visible outside before commit
	if err := s.Commit(txCtx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-1", nil); err != nil {
		t.Errorf("get after commit: %v", err)
	}
	if err := s.Rollback(txCtx); err != nil {
		t.Errorf("rollback after commit: %v, want nil", err)
	}
}

func testNoTransaction(t *testing.T, s unitStore) {
	wantErr(t, s.Commit(t.Context()), store.ErrNoTransaction)
	wantErr(t, s.Rollback(t.Context()), store.ErrNoTransaction)
}

// testNested: fosite's transaction inside a unit of ours is a part of it,
// so its rollback undoes only its own work.
func testNested(t *testing.T, s unitStore) {
	ctx := t.Context()
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := s.CreateAccessTokenSession(ctx, "at-outer", newRequest("req-1")); err != nil {
			return err
		}
		inner, err := s.BeginTX(ctx)
		if err != nil {
			return err
		}
		if err := s.CreateAccessTokenSession(inner, "at-inner", newRequest("req-1")); err != nil {
			return err
		}
		return s.Rollback(inner)
	})
	if err != nil {
		t.Fatalf("outer transaction: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-outer", nil); err != nil {
		t.Errorf("outer write: %v, want committed", err)
	}
	_, err = s.GetAccessTokenSession(ctx, "at-inner", nil)
	wantErr(t, err, fosite.ErrNotFound)
}

// race runs fn twice at once, each in its own fosite transaction begun
// before either proceeds, committing on success and rolling back on error
// as fosite does. It returns both errors.
func race(t *testing.T, s unitStore, fn func(ctx context.Context, i int) error) [2]error {
	t.Helper()
	var (
		errs  [2]error
		begun sync.WaitGroup
		done  sync.WaitGroup
		start = make(chan struct{})
	)
	begun.Add(2)
	done.Add(2)
	for i := range 2 {
		go func() {
			defer done.Done()
			ctx, err := s.BeginTX(t.Context())
			begun.Done()
			if err != nil {
				errs[i] = err
				return
			}
			<-start
			if err := fn(ctx, i); err != nil {
				errs[i] = err
				if rbErr := s.Rollback(ctx); rbErr != nil {
					errs[i] = fmt.Errorf("%w (rollback: %v)", err, rbErr)
				}
				return
			}
			errs[i] = s.Commit(ctx)
		}()
	}
	begun.Wait()
	close(start)
	done.Wait()
	return errs
}

// oneWinner fails t unless exactly one of errs is nil and the other is
// loser.
func oneWinner(t *testing.T, errs [2]error, loser error) (winner int) {
	t.Helper()
	switch {
	case errs[0] == nil && errs[1] != nil:
		winner = 0
	case errs[1] == nil && errs[0] != nil:
		winner = 1
	default:
		t.Fatalf("errors = %v, %v; want exactly one nil", errs[0], errs[1])
	}
	wantErr(t, errs[1-winner], loser)
	return winner
}

// testConcurrentRefresh replays fosite's refresh grant twice at once with
// one refresh token: exactly one may issue new tokens.
func testConcurrentRefresh(t *testing.T, s unitStore) {
	for round := range 5 {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			ctx := t.Context()
			reqID := fmt.Sprint("req-", round)
			req := newRequest(reqID)
			if err := s.CreateAccessTokenSession(ctx, reqID+"-at", req); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateRefreshTokenSession(ctx, reqID+"-rt", reqID+"-at", req); err != nil {
				t.Fatal(err)
			}
			errs := race(t, s, func(ctx context.Context, i int) error {
				if err := s.RotateRefreshToken(ctx, reqID, reqID+"-rt"); err != nil {
					return err
				}
				at, rt := fmt.Sprintf("%s-at-%d", reqID, i), fmt.Sprintf("%s-rt-%d", reqID, i)
				if err := s.CreateAccessTokenSession(ctx, at, req); err != nil {
					return err
				}
				return s.CreateRefreshTokenSession(ctx, rt, at, req)
			})
			w := oneWinner(t, errs, fosite.ErrInactiveToken)

			if _, err := s.GetRefreshTokenSession(ctx, fmt.Sprintf("%s-rt-%d", reqID, w), nil); err != nil {
				t.Errorf("winner's refresh token: %v", err)
			}
			_, err := s.GetRefreshTokenSession(ctx, fmt.Sprintf("%s-rt-%d", reqID, 1-w), nil)
			wantErr(t, err, fosite.ErrNotFound)
			_, err = s.GetRefreshTokenSession(ctx, reqID+"-rt", nil)
			wantErr(t, err, fosite.ErrInactiveToken)
			var active int
			if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_refresh_tokens WHERE request_id = $1 AND active`, reqID).Scan(&active); err != nil {
				t.Fatal(err)
			}
			if active != 1 {
				t.Errorf("%d active refresh tokens, want 1", active)
			}
		})
	}
}

// testConcurrentExchange replays fosite's code exchange twice at once with
// one code: exactly one may issue tokens.
func testConcurrentExchange(t *testing.T, s unitStore) {
	ctx := t.Context()
	req := newRequest("req-1")
	if err := s.CreateAuthorizeCodeSession(ctx, "code-1", req); err != nil {
		t.Fatal(err)
	}
	errs := race(t, s, func(ctx context.Context, i int) error {
		if err := s.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
			return err
		}
		return s.CreateAccessTokenSession(ctx, fmt.Sprint("at-", i), req)
	})
	w := oneWinner(t, errs, fosite.ErrInvalidatedAuthorizeCode)
	if _, err := s.GetAccessTokenSession(ctx, fmt.Sprint("at-", w), nil); err != nil {
		t.Errorf("winner's access token: %v", err)
	}
	_, err := s.GetAccessTokenSession(ctx, fmt.Sprint("at-", 1-w), nil)
	wantErr(t, err, fosite.ErrNotFound)
}

// testSerializationFailure: under REPEATABLE READ a lost race is SQLSTATE
// 40001, which fosite must see as ErrSerializationFailure.
func testSerializationFailure(t *testing.T, s unitStore) {
	ctx := t.Context()
	req := newRequest("req-1")
	if err := s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req); err != nil {
		t.Fatal(err)
	}
	cfg := s.Pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "repeatable read"
	rr, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	err = db.Tx(ctx, rr, func(txCtx context.Context) error {
		if _, err := s.GetRefreshTokenSession(txCtx, "rt-1", nil); err != nil { // takes the snapshot
			t.Fatal(err)
		}
		if err := s.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			t.Fatalf("concurrent rotate: %v", err)
		}
		if err := s.Store.RotateRefreshToken(txCtx, "req-1", "rt-1"); err != nil {
			return err
		}
		u, _ := db.From(txCtx)
		return u.Send(txCtx)
	})
	wantErr(t, err, fosite.ErrSerializationFailure)
}

func testJTI(t *testing.T, s unitStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	if err := s.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
		t.Fatalf("unknown jti: %v, want nil", err)
	}
	if err := s.SetClientAssertionJWT(ctx, "jti-1", exp); err != nil {
		t.Fatalf("set: %v", err)
	}
	wantErr(t, s.ClientAssertionJWTValid(ctx, "jti-1"), fosite.ErrJTIKnown)
	wantErr(t, s.SetClientAssertionJWT(ctx, "jti-1", exp), fosite.ErrJTIKnown)
	if err := s.ClientAssertionJWTValid(ctx, "jti-2"); err != nil {
		t.Errorf("other jti: %v, want nil", err)
	}
}

// testExpiredJTI: an expired jti cannot be replayed (its assertion has
// expired too), so it no longer counts and is purged on the next insert.
func testExpiredJTI(t *testing.T, s unitStore) {
	ctx := t.Context()
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, jti := range []string{"jti-old", "jti-stale"} {
		if err := s.SetClientAssertionJWT(ctx, jti, past); err != nil {
			t.Fatalf("set %s: %v", jti, err)
		}
	}
	if err := s.ClientAssertionJWTValid(ctx, "jti-old"); err != nil {
		t.Errorf("expired jti: %v, want nil", err)
	}
	if err := s.SetClientAssertionJWT(ctx, "jti-old", future); err != nil {
		t.Fatalf("set over expired: %v", err)
	}
	wantErr(t, s.ClientAssertionJWTValid(ctx, "jti-old"), fosite.ErrJTIKnown)
	var n int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM oauth_client_assertion_jti WHERE jti = 'jti-stale'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("expired jti-stale was not purged")
	}
}

// endSession ends testSID the way how says: revoked, or one of its
// timeouts passed (a session the janitor has not ended yet).
func endSession(t *testing.T, s unitStore, how string) {
	t.Helper()
	set := map[string]string{
		"revoked":       `revoked_at = now()`,
		"idle timeout":  `idle_expires_at = now() - interval '1 second'`,
		"absolute life": `absolute_expires_at = now() - interval '1 second'`,
	}[how]
	if _, err := s.Pool.Exec(t.Context(), `UPDATE sso_sessions SET `+set+` WHERE id = $1`, testSID); err != nil {
		t.Fatal(err)
	}
}

var sessionEnds = []string{"revoked", "idle timeout", "absolute life"}

// testExchangeEndedSession: a code whose SSO session ended buys no tokens,
// even when the code itself is still unused (the session ended between
// the authorization and the exchange).
func testExchangeEndedSession(t *testing.T, s unitStore) {
	for i, how := range sessionEnds {
		t.Run(how, func(t *testing.T) {
			ctx := t.Context()
			if _, err := s.Pool.Exec(ctx, `UPDATE sso_sessions SET revoked_at = NULL, idle_expires_at = '2100-01-01', absolute_expires_at = '2100-01-01'`); err != nil {
				t.Fatal(err)
			}
			code, at := fmt.Sprint("code-", i), fmt.Sprint("at-", i)
			if err := s.CreateAuthorizeCodeSession(ctx, code, newRequest("req-1")); err != nil {
				t.Fatal(err)
			}
			endSession(t, s, how)
			err := s.unit(ctx, func(ctx context.Context) error {
				if err := s.Store.InvalidateAuthorizeCodeSession(ctx, code); err != nil {
					return err
				}
				return s.Store.CreateAccessTokenSession(ctx, at, newRequest("req-1"))
			})
			wantErr(t, err, sessions.ErrSessionEnded)
			if !store.IsSessionEnded(err) {
				t.Errorf("IsSessionEnded(%v) = false", err)
			}
			_, err = s.GetAccessTokenSession(ctx, at, nil)
			wantErr(t, err, fosite.ErrNotFound)
		})
	}
}

// testRefreshEndedSession: a grant bound to its SSO session cannot be
// refreshed once the session ended, revoked or timed out (the janitor may
// not have ended it yet); an offline_access grant outlives its session.
func testRefreshEndedSession(t *testing.T, s unitStore) {
	n := 0
	refresh := func(t *testing.T, scopes ...string) error {
		ctx := t.Context()
		n++
		req := newRequest(fmt.Sprint("req-", n), scopes...)
		rt := fmt.Sprint("rt-", n)
		if err := s.CreateRefreshTokenSession(ctx, rt, "", req); err != nil {
			t.Fatal(err)
		}
		return s.unit(ctx, func(ctx context.Context) error {
			if err := s.Store.RotateRefreshToken(ctx, req.ID, rt); err != nil {
				return err
			}
			return s.Store.CreateRefreshTokenSession(ctx, rt+"-next", "", req)
		})
	}
	for _, how := range sessionEnds {
		t.Run(how, func(t *testing.T) {
			if _, err := s.Pool.Exec(t.Context(), `UPDATE sso_sessions SET revoked_at = NULL, idle_expires_at = '2100-01-01', absolute_expires_at = '2100-01-01'`); err != nil {
				t.Fatal(err)
			}
			if err := refresh(t, "openid"); err != nil {
				t.Fatalf("refresh on a live session: %v", err)
			}
			endSession(t, s, how)
			wantErr(t, refresh(t, "openid"), sessions.ErrSessionEnded)
			if err := refresh(t, "openid", "offline_access"); err != nil {
				t.Errorf("offline_access grant after its session's end: %v, want refreshed", err)
			}
		})
	}
}

// testAccessTokenSessionTimeout: an access token of a session that idled or
// aged out is inactive at once, before the janitor ends the session and
// deletes it; one of an offline_access grant is not.
func testAccessTokenSessionTimeout(t *testing.T, s unitStore) {
	ctx := t.Context()
	if err := s.CreateAccessTokenSession(ctx, "at-bound", newRequest("req-1", "openid")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(ctx, "at-offline", newRequest("req-2", "openid", "offline_access")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-bound", nil); err != nil {
		t.Fatalf("before the timeout: %v", err)
	}
	endSession(t, s, "idle timeout")
	_, err := s.GetAccessTokenSession(ctx, "at-bound", nil)
	wantErr(t, err, fosite.ErrInactiveToken)
	if _, err := s.GetAccessTokenSession(ctx, "at-offline", nil); err != nil {
		t.Errorf("offline_access grant's access token: %v, want active", err)
	}
}

// testRevocationWaitsForIssuance: a refresh has written its new tokens but
// not committed when an administrator's revoke-all begins. The revocation
// must wait for it and then end the new tokens too: before issuance locked
// the session, the revocation waited only on the old token's row, and the
// new tokens, invisible to the statement that had already started, lived
// on.
func testRevocationWaitsForIssuance(t *testing.T, s unitStore) {
	ctx := t.Context()
	m := &sessions.Manager{Pool: s.Pool, Now: time.Now, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	req := newRequest("req-1", "openid")
	if err := s.CreateRefreshTokenSession(ctx, "rt-1", "", req); err != nil {
		t.Fatal(err)
	}
	revoked := make(chan error, 1)
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		if err := s.Store.RotateRefreshToken(ctx, "req-1", "rt-1"); err != nil {
			return err
		}
		if err := s.Store.CreateAccessTokenSession(ctx, "at-2", req); err != nil {
			return err
		}
		if err := s.Store.CreateRefreshTokenSession(ctx, "rt-2", "at-2", req); err != nil {
			return err
		}
		u, _ := db.From(ctx)
		if err := u.Send(ctx); err != nil { // written, locks held, not committed
			return err
		}
		go func() {
			_, err := m.Revoke(context.Background(), sessions.Revocation{UserID: testUserID, Reason: sessions.ReasonAdminRevoke, IncludeOffline: true})
			revoked <- err
		}()
		select {
		case err := <-revoked:
			t.Fatalf("the revocation finished (%v) while tokens of the session were being issued", err)
		case <-time.After(200 * time.Millisecond):
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-2", nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("access token issued during the revocation: %v, want it deleted", err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-2", nil); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("refresh token issued during the revocation: %v, want it inactive", err)
	}
}

// testJTIPipelined: in a request's pipeline the jti waits for the commit;
// of two requests spending one jti the second's commit fails with
// fosite.ErrJTIKnown (and takes its other writes with it), and a request
// rolled back spends nothing.
func testJTIPipelined(t *testing.T, s unitStore) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	ctxA, a := s.Pipeline(ctx)
	ctxB, b := s.Pipeline(ctx)
	for _, c := range []context.Context{ctxA, ctxB} {
		if err := s.ClientAssertionJWTValid(c, "jti-p"); err != nil {
			t.Fatalf("unspent jti: %v", err)
		}
		if err := s.Store.SetClientAssertionJWT(c, "jti-p", exp); err != nil {
			t.Fatalf("queued set: %v", err)
		}
	}
	if err := s.Store.CreateAccessTokenSession(ctxB, "at-b", newRequest("req-b")); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctxA); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	wantErr(t, b.Commit(ctxB), fosite.ErrJTIKnown)
	if _, err := s.GetAccessTokenSession(ctx, "at-b", nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("the second request's token: %v, want not found", err)
	}
	wantErr(t, s.ClientAssertionJWTValid(ctx, "jti-p"), fosite.ErrJTIKnown)

	ctxC, c := s.Pipeline(ctx)
	if err := s.Store.SetClientAssertionJWT(ctxC, "jti-rolled-back", exp); err != nil {
		t.Fatal(err)
	}
	c.Rollback(ctxC)
	if err := s.ClientAssertionJWTValid(ctx, "jti-rolled-back"); err != nil {
		t.Fatalf("a rolled-back request spent its jti: %v", err)
	}
}
