package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
)

const adminEmail = "admin@bench.example"

type revokeFunc func(ctx context.Context, userID string) (sessions.Result, error)

// revoker returns how to revoke all of a user's sessions as an
// administrator: DELETE /admin/api/users/{id}/sessions with an access token
// that an administrator got by signing in to the console app with two
// factors (the API takes no other person's), or, when the admin API is not
// mounted, the call it makes (sessions.Manager.Revoke with
// ReasonAdminRevoke and IncludeOffline) in-process.
func (r *runner) revoker(ctx context.Context) (revokeFunc, string, error) {
	adm, err := r.createUser(ctx, adminEmail, true)
	if err != nil {
		return nil, "", err
	}
	// Enrolled with the previous step's code, so the current one is free.
	secret, err := r.enrollTOTP(ctx, adm.ID, adminEmail)
	if err != nil {
		return nil, "", err
	}
	b := newBrowser(r.in.issuer, r.tr)
	code, req, err := b.signIn(ctx, r.console, adminEmail, benchPassword,
		func() string { return mfa.GenerateCode(secret, time.Now()) })
	if err != nil {
		return nil, "", fmt.Errorf("bench: administrator sign-in: %w", err)
	}
	tok, err := r.console.exchange(ctx, r.hc, code, req)
	if err != nil {
		return nil, "", fmt.Errorf("bench: administrator sign-in: %w", err)
	}
	bearer := "Bearer " + tok.AccessToken

	// Is the API there? Looking the administrator up is harmless.
	status, _, err := r.bearerCall(ctx, http.MethodGet, "/admin/api/users?email="+url.QueryEscape(adminEmail), bearer, nil)
	if err != nil {
		return nil, "", err
	}
	switch status {
	case http.StatusOK:
		return func(ctx context.Context, userID string) (sessions.Result, error) {
			var res sessions.Result
			status, body, err := r.bearerCall(ctx, http.MethodDelete, "/admin/api/users/"+url.PathEscape(userID)+"/sessions", bearer, nil)
			if err != nil {
				return res, err
			}
			if status != http.StatusOK {
				return res, fmt.Errorf("DELETE /admin/api/users/{id}/sessions: HTTP %d", status)
			}
			if err := json.Unmarshal(body, &res); err != nil {
				return res, fmt.Errorf("DELETE /admin/api/users/{id}/sessions: %w", err)
			}
			return res, nil
		}, "DELETE /admin/api/users/{id}/sessions", nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return func(ctx context.Context, userID string) (sessions.Result, error) {
			return r.in.srv.Sessions.Revoke(ctx, sessions.Revocation{UserID: userID,
				Reason: sessions.ReasonAdminRevoke, IncludeOffline: true, Actor: "admin:bench"})
		}, fmt.Sprintf("in-process sessions.Manager.Revoke (admin API answered HTTP %d)", status), nil
	default:
		return nil, "", fmt.Errorf("bench: admin API: GET /admin/api/users: HTTP %d", status)
	}
}

// bearerCall calls the provider's API at path with an Authorization header
// and, when body is not nil, body as JSON; it returns the status and the
// answer.
func (r *runner) bearerCall(ctx context.Context, method, path, bearer string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.in.issuer+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, answer, err
}
