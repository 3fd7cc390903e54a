package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// secretParams are form parameters that are credentials or tokens. fosite
// sanitises most forms before storing them, but not by our rules, so they
// are dropped here whatever the caller passed: a database reader must not
// learn anything it could present to an endpoint. id_token_hint stays: it
// grants nothing, and fosite re-checks its subject when it issues the ID
// token from the stored OpenID Connect session.
var secretParams = []string{
	"client_secret",
	"client_assertion",
	"password",
	"code",
	"refresh_token",
	"code_verifier",
	"token",
	"device_code",
}

// storedRequest is the JSON form of a fosite request. The client is stored
// by id only and loaded afresh on read, so a changed or deleted client takes
// effect on its existing tokens.
type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScopes   []string   `json:"requested_scopes"`
	GrantedScopes     []string   `json:"granted_scopes"`
	RequestedAudience []string   `json:"requested_audience"`
	GrantedAudience   []string   `json:"granted_audience"`
	Form              url.Values `json:"form"`
	// Session is the fosite.Session itself, encoded and decoded in the
	// document's one pass (decoding fills the prototype it is set to). A
	// json.RawMessage here cost a second pass each way: the encoder
	// re-validates and compacts raw messages, the decoder scans them twice.
	Session any `json:"session"`
}

// row is what goes into the columns shared by every token table.
type row struct {
	requestID   string
	clientID    string
	subject     string
	sid         pgtype.UUID
	requestedAt time.Time
	expiresAt   pgtype.Timestamptz
	request     []byte
}

// BoundKeyParam is where a token's DPoP key lives: the JWK SHA-256
// thumbprint (cnf.jkt, RFC 9449) of the key the token is bound to, in its
// stored request's form. fosite keeps no place for it, and the form is what
// comes back with the token from every lookup (introspection, userinfo).
// It is never taken from a client's form: storedForm drops it, and only
// WithBoundKey puts it there.
const BoundKeyParam = "cnf_jkt"

type boundKey struct{}

// WithBoundKey returns ctx of a token request whose DPoP proof's key has
// the thumbprint jkt ("" for a request without a proof): the access and
// refresh tokens created in it are bound to that key, and a public
// client's refresh token bound to a key is accepted in it only with a
// proof of that key (GetRefreshTokenSession). The token endpoint sets it
// on every request, and the revocation endpoint, which creates no token,
// so that such a refresh token is revoked only with a proof of its key.
func WithBoundKey(ctx context.Context, jkt string) context.Context {
	return context.WithValue(ctx, boundKey{}, jkt)
}

// ErrWrongKey: a public client's DPoP-bound refresh token was presented
// without a proof of its key (RFC 9449 §5): the token endpoint answers
// invalid_dpop_proof.
var ErrWrongKey = errors.New("store: the refresh token is bound to another DPoP key")

// BoundKey is the thumbprint of the DPoP key the token behind r is bound
// to, "" for a bearer token.
func BoundKey(r fosite.Requester) string { return r.GetRequestForm().Get(BoundKeyParam) }

// boundKeyFrom is the key of WithBoundKey, and whether ctx is a token
// request's.
func boundKeyFrom(ctx context.Context) (jkt string, ok bool) {
	jkt, ok = ctx.Value(boundKey{}).(string)
	return jkt, ok
}

// newRow flattens r for a table whose expiry is the session's expiry of
// kind; jkt, when set, is the DPoP key the token is bound to.
func newRow(r fosite.Requester, kind fosite.TokenType, jkt string) (row, error) {
	var clientID string
	if c := r.GetClient(); c != nil {
		clientID = c.GetID()
	}
	form := storedForm(r)
	if jkt != "" {
		form.Set(BoundKeyParam, jkt)
	}
	sess := r.GetSession()
	doc, err := json.Marshal(storedRequest{
		ID:                r.GetID(),
		RequestedAt:       r.GetRequestedAt(),
		ClientID:          clientID,
		RequestedScopes:   r.GetRequestedScopes(),
		GrantedScopes:     r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(),
		GrantedAudience:   r.GetGrantedAudience(),
		Form:              form,
		Session:           sess,
	})
	if err != nil {
		return row{}, fmt.Errorf("marshal request: %w", err)
	}
	out := row{
		requestID:   r.GetID(),
		clientID:    clientID,
		requestedAt: r.GetRequestedAt(),
		request:     doc,
	}
	if sess != nil {
		out.subject = sess.GetSubject()
		out.sid = sessionID(sess)
		if t := sess.GetExpiresAt(kind); !t.IsZero() {
			out.expiresAt = pgtype.Timestamptz{Time: t, Valid: true}
		}
	}
	return out, nil
}

// storedForm is r's form as it may be stored: without secretParams.
func storedForm(r fosite.Requester) url.Values {
	form := url.Values{}
	for k, v := range r.GetRequestForm() {
		form[k] = v
	}
	for _, k := range secretParams {
		delete(form, k)
	}
	delete(form, BoundKeyParam)
	return form
}

// sameGrant reports whether a and b are one authorization request stored
// twice: fosite's Sanitize copies, which share the session and differ only
// in their forms. The PKCE and OpenID Connect sessions of a code are such
// copies of the code's request.
func sameGrant(a, b fosite.Requester) bool {
	return a.GetID() == b.GetID() &&
		a.GetSession() == b.GetSession() &&
		a.GetClient() != nil && b.GetClient() != nil && a.GetClient().GetID() == b.GetClient().GetID() &&
		a.GetRequestedAt().Equal(b.GetRequestedAt()) &&
		slices.Equal(a.GetRequestedScopes(), b.GetRequestedScopes()) &&
		slices.Equal(a.GetGrantedScopes(), b.GetGrantedScopes()) &&
		slices.Equal(a.GetRequestedAudience(), b.GetRequestedAudience()) &&
		slices.Equal(a.GetGrantedAudience(), b.GetGrantedAudience())
}

// formRequest is req with its form replaced by the stored form doc: a
// code's PKCE or OpenID Connect session (name) read from the code's row.
func formRequest(req *fosite.Request, doc []byte, name string) (fosite.Requester, error) {
	form := url.Values{}
	if err := json.Unmarshal(doc, &form); err != nil {
		return nil, fmt.Errorf("store: get %s: unmarshal form: %w", name, err)
	}
	out := *req
	out.Form = form
	return &out, nil
}

// sessionID is the SSO session's public id, carried as the "sid" claim of
// the ID token. It is stored in a column so ending an SSO session can revoke
// its tokens with one query; anything but a UUID is not ours and is left out.
func sessionID(sess fosite.Session) pgtype.UUID {
	c, ok := sess.(interface{ IDTokenClaims() *jwt.IDTokenClaims })
	if !ok {
		return pgtype.UUID{}
	}
	claims := c.IDTokenClaims()
	if claims == nil {
		return pgtype.UUID{}
	}
	s, ok := claims.Extra["sid"].(string)
	if !ok {
		return pgtype.UUID{}
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return pgtype.UUID{}
	}
	return pgtype.UUID{Bytes: id, Valid: true}
}

// decode rebuilds a request from its JSON document, unmarshalling the
// session into proto. The revocation handler passes no prototype; the server
// uses *openid.DefaultSession, so that is what it gets.
func (s *Store) decode(ctx context.Context, doc []byte, proto fosite.Session) (*fosite.Request, error) {
	if proto == nil {
		proto = &openid.DefaultSession{}
	}
	sr := storedRequest{Session: proto}
	if err := json.Unmarshal(doc, &sr); err != nil {
		return nil, fmt.Errorf("unmarshal request: %w", err)
	}
	// encoding/json decodes into the pointer an interface holds; anything
	// else in its place means the prototype was not a pointer, and the
	// session was not read. (A null session leaves nil and proto as is.)
	if sr.Session != nil && sr.Session != proto {
		return nil, fmt.Errorf("unmarshal request: session prototype %T is not a pointer", proto)
	}
	client, err := s.Clients.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, fmt.Errorf("get client: %w", err)
	}
	form := sr.Form
	if form == nil {
		form = url.Values{}
	}
	return &fosite.Request{
		ID:                sr.ID,
		RequestedAt:       sr.RequestedAt,
		Client:            client,
		RequestedScope:    fosite.Arguments(sr.RequestedScopes),
		GrantedScope:      fosite.Arguments(sr.GrantedScopes),
		Form:              form,
		Session:           proto,
		RequestedAudience: fosite.Arguments(sr.RequestedAudience),
		GrantedAudience:   fosite.Arguments(sr.GrantedAudience),
	}, nil
}

// BoundKeyIn is the thumbprint of the DPoP key the tokens created in ctx
// are bound to (see WithBoundKey), "" for none: a JWT access token
// carries it as cnf.jkt.
func BoundKeyIn(ctx context.Context) string {
	jkt, _ := boundKeyFrom(ctx)
	return jkt
}
