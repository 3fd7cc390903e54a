package demoapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// eventLogout is the member of the events claim that makes a JWT a logout
// token (Back-Channel Logout 1.0 §2.4).
const eventLogout = "http://schemas.openid.net/event/backchannel-logout"

// errInvalidLogoutToken wraps every reason a logout token is refused.
var errInvalidLogoutToken = errors.New("invalid logout token")

// logoutClaims are the claims of a logout token.
type logoutClaims struct {
	jwt.Claims
	SID    string                     `json:"sid"`
	Events map[string]json.RawMessage `json:"events"`
	Nonce  json.RawMessage            `json:"nonce"` // non-nil when present at all, even as null
}

// backchannelLogout is the app's backchannel_logout_uri: it verifies the
// logout token and ends the local sessions it names. 200 when the token is
// valid (whether or not a session matched), 400 with a JSON error when it
// is not (§2.8), 503 when the provider's keys cannot be fetched, so the
// provider retries.
func (a *App) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	raw := r.PostFormValue("logout_token")
	if raw == "" {
		jsonError(w, http.StatusBadRequest, "invalid_request", "logout_token is required")
		return
	}
	d, err := a.discover(r.Context())
	if err != nil {
		a.cfg.Logger.Error("demoapp: back-channel logout", "err", err)
		jsonError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the provider's metadata cannot be fetched")
		return
	}
	c, err := a.verifyLogoutToken(r.Context(), d, raw)
	if err != nil {
		a.cfg.Logger.Warn("demoapp: back-channel logout refused", "app", a.cfg.ClientID, "err", err)
		jsonError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	n := a.endSessions(c.SID, c.Subject, "back-channel logout")
	a.cfg.Logger.Info("demoapp: back-channel logout", "app", a.cfg.ClientID, "jti", c.ID, "sid", c.SID, "sessions", n)
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken validates a logout token as Back-Channel Logout 1.0
// §2.6 requires: an allowed signing algorithm and a signature by the
// provider's published keys, explicit typ logout+jwt, iss, aud containing
// this client, iat and exp, the logout event, no nonce, a sub or a sid, and
// a jti not seen before.
func (a *App) verifyLogoutToken(ctx context.Context, d *discovery, raw string) (logoutClaims, error) {
	var c logoutClaims
	invalid := func(format string, args ...any) (logoutClaims, error) {
		return logoutClaims{}, fmt.Errorf("%w: %s", errInvalidLogoutToken, fmt.Sprintf(format, args...))
	}
	algs := make([]jose.SignatureAlgorithm, len(d.algs))
	for i, alg := range d.algs {
		algs[i] = jose.SignatureAlgorithm(alg)
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil {
		return invalid("not a compact JWS signed with %s: %v", strings.Join(d.algs, " or "), err)
	}
	if len(jws.Signatures) != 1 {
		return invalid("%d signatures, want 1", len(jws.Signatures))
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	if t := strings.ToLower(typ); t != "logout+jwt" && t != "application/logout+jwt" {
		return invalid("typ is %q, want logout+jwt", typ)
	}
	payload, err := d.keys.VerifySignature(ctx, raw)
	if err != nil {
		return invalid("signature: %v", err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return invalid("claims: %v", err)
	}
	now := a.cfg.Now()
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: a.cfg.Issuer, AnyAudience: jwt.Audience{a.cfg.ClientID}, Time: now}, leeway); err != nil {
		return invalid("%v", err)
	}
	switch {
	case c.IssuedAt == nil:
		return invalid("no iat")
	case c.Expiry == nil:
		return invalid("no exp")
	case c.ID == "":
		return invalid("no jti")
	case c.Subject == "" && c.SID == "":
		return invalid("neither sub nor sid")
	case c.Nonce != nil:
		return invalid("a logout token must not contain a nonce")
	}
	ev, ok := c.Events[eventLogout]
	if !ok {
		return invalid("events has no %s member", eventLogout)
	}
	if ev = bytes.TrimSpace(ev); len(ev) == 0 || ev[0] != '{' {
		return invalid("the logout event's value is not a JSON object")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(now)
	if _, seen := a.seenJTI[c.ID]; seen {
		return invalid("jti was already used")
	}
	a.seenJTI[c.ID] = c.Expiry.Time().Add(leeway)
	return c, nil
}

func jsonError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
