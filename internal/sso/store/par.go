package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

var _ fosite.PARStorage = (*Store)(nil)

// A pushed authorization request (RFC 9126) is a row of
// oauth_par_requests keyed by the SHA-256 of its request_uri, bound to
// the client that pushed it, with the validated request as a document.
// It is consumed by reading it: GetPARSession deletes the row as it reads
// it, so a request_uri buys one authorization on any number of instances,
// and a request_uri presented with another client's id, or after it
// expired, finds nothing (and, from another client, consumes nothing).

// storedPAR is a pushed request's document: the request, and what an
// authorization request has beyond it.
type storedPAR struct {
	storedRequest
	RedirectURI   string   `json:"redirect_uri"`
	ResponseTypes []string `json:"response_types"`
	State         string   `json:"state"`
	ResponseMode  string   `json:"response_mode"`
}

// CreatePARSession implements fosite.PARStorage. The row expires when the
// request's session says (fosite sets PushedAuthorizeRequestContext from
// its PushedAuthorizeContextLifespan).
func (s *Store) CreatePARSession(ctx context.Context, requestURI string, r fosite.AuthorizeRequester) error {
	var exp time.Time
	if sess := r.GetSession(); sess != nil {
		exp = sess.GetExpiresAt(fosite.PushedAuthorizeRequestContext)
	}
	if exp.IsZero() {
		return errors.New("store: create PAR session: the request has no expiry")
	}
	return s.SavePushedRequest(ctx, requestURI, r, exp)
}

// SavePushedRequest stores r under requestURI until expires: a pushed
// request, or the rest of one whose request_uri was consumed and which
// must wait for a sign-in (sso's continuation). The write joins the unit
// in ctx.
func (s *Store) SavePushedRequest(ctx context.Context, requestURI string, r fosite.AuthorizeRequester, expires time.Time) error {
	u, err := unit(ctx, "create PAR session")
	if err != nil {
		return err
	}
	rw, err := newRow(r, fosite.PushedAuthorizeRequestContext, "")
	if err != nil {
		return fmt.Errorf("store: create PAR session: %w", err)
	}
	doc := storedPAR{ResponseTypes: r.GetResponseTypes(), State: r.GetState(), ResponseMode: string(r.GetResponseMode())}
	if err := json.Unmarshal(rw.request, &doc.storedRequest); err != nil {
		return fmt.Errorf("store: create PAR session: %w", err)
	}
	doc.Session = r.GetSession()
	if uri := r.GetRedirectURI(); uri != nil {
		doc.RedirectURI = uri.String()
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("store: create PAR session: marshal: %w", err)
	}
	u.Queue(`INSERT INTO oauth_par_requests (request_uri_hash, client_id, expires_at, request) VALUES ($1, $2, $3, $4)`,
		HashSignature(requestURI), rw.clientID, expires, b).MapErr(mapDBErr("create PAR session"))
	return nil
}

// GetPARSession implements fosite.PARStorage: it consumes the request
// pushed under requestURI by the client named in the authorization
// request (fosite puts the HTTP request in ctx), at once and outside any
// unit of work. fosite.ErrNotFound when there is none: unknown, used,
// expired, or pushed by another client.
func (s *Store) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	hr, ok := ctx.Value(fosite.RequestContextKey).(*http.Request)
	if !ok {
		return nil, errors.New("store: get PAR session: no HTTP request in the context")
	}
	var doc []byte
	err := s.Pool.QueryRow(ctx, `
		DELETE FROM oauth_par_requests
		WHERE request_uri_hash = $1 AND client_id = $2 AND expires_at > $3
		RETURNING request`, HashSignature(requestURI), hr.Form.Get("client_id"), s.now()).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store: get PAR session: %w", fosite.ErrNotFound)
	}
	if err != nil {
		return nil, dbErr("get PAR session", err)
	}
	req, err := s.decodeDoc(ctx, "PAR session", doc, nil)
	if err != nil {
		return nil, err
	}
	var extra storedPAR
	if err := json.Unmarshal(doc, &extra); err != nil {
		return nil, fmt.Errorf("store: get PAR session: unmarshal: %w", err)
	}
	ar := &fosite.AuthorizeRequest{
		ResponseTypes:        fosite.Arguments(extra.ResponseTypes),
		State:                extra.State,
		ResponseMode:         fosite.ResponseModeType(extra.ResponseMode),
		HandledResponseTypes: fosite.Arguments{},
		Request:              *req,
	}
	if extra.RedirectURI != "" {
		if ar.RedirectURI, err = url.Parse(extra.RedirectURI); err != nil {
			return nil, fmt.Errorf("store: get PAR session: redirect URI: %w", err)
		}
	}
	return ar, nil
}

// DeletePARSession implements fosite.PARStorage: nothing is left to
// delete, since GetPARSession consumed the row as it read it (fosite
// deletes after reading, which would let two instances read one request
// between them).
func (s *Store) DeletePARSession(context.Context, string) error { return nil }
