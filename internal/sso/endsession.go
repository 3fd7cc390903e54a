package sso

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/web"
)

// logoutRequest is a validated RP-Initiated Logout 1.0 request.
type logoutRequest struct {
	hint        *idTokenClaims
	clientID    string
	redirectURI string // validated post_logout_redirect_uri, or ""
	state       string
}

type logoutPage struct {
	Client      string
	RedirectURI string
	State       string
	ClientID    string
	Done        bool
}

// endSession implements RP-Initiated Logout 1.0 (GET and POST). With a
// valid id_token_hint for the browser's current session it signs out at
// once; otherwise it asks the person to confirm, so another site cannot
// sign them out. Every sign-out goes through sessions.Revoke, which queues
// the back-channel notifications; the redirect never waits for them.
func (p *Provider) endSession(w http.ResponseWriter, r *http.Request) {
	lr, sess, ok := p.logoutContext(w, r)
	if !ok {
		return
	}
	if lr.hint == nil || lr.hint.SID != sess.ID || lr.hint.Subject != sess.UserID {
		// Confirming goes on to the validated post-logout redirect URI.
		p.Templates.Render(w, http.StatusOK, "logout", "Sign out", p.Sessions.CSRFToken(r), logoutPage{
			Client: p.clientName(r, lr.clientID), RedirectURI: lr.redirectURI, State: lr.state, ClientID: lr.clientID,
		}, lr.redirectURI)
		return
	}
	p.logout(w, r, sess, lr)
}

// logoutContext validates a logout request and finds the browser's
// session. It returns false when it has answered already: a bad request
// (an error page, nothing changed), or no session (logging out is
// idempotent: the browser simply moves on).
func (p *Provider) logoutContext(w http.ResponseWriter, r *http.Request) (logoutRequest, sessions.Session, bool) {
	web.NoStore(w)
	lr, ok := p.parseLogout(w, r)
	if !ok {
		return lr, sessions.Session{}, false
	}
	sess, err := p.Sessions.Current(r.Context(), r)
	if errors.Is(err, sessions.ErrNoSession) {
		p.Sessions.ClearCookie(w)
		p.afterLogout(w, r, lr)
		return lr, sess, false
	}
	if err != nil {
		p.Errors.Internal(w, r, err)
		return lr, sess, false
	}
	return lr, sess, true
}

// confirmLogout is the confirmation form's target.
func (p *Provider) confirmLogout(w http.ResponseWriter, r *http.Request) {
	lr, sess, ok := p.logoutContext(w, r)
	if !ok {
		return
	}
	if !p.Sessions.CheckCSRF(r) {
		p.Errors.StaleForm(w, "Reload the page and try again.")
		return
	}
	p.logout(w, r, sess, lr)
}

func (p *Provider) logout(w http.ResponseWriter, r *http.Request, s sessions.Session, lr logoutRequest) {
	_, err := p.Sessions.Revoke(r.Context(), sessions.Revocation{
		SIDs: []string{s.ID}, UserID: s.UserID, Reason: sessions.ReasonLogout, Actor: audit.User(s.UserID),
	})
	if err != nil {
		p.Errors.Internal(w, r, err)
		return
	}
	p.Sessions.ClearCookie(w)
	p.afterLogout(w, r, lr)
}

func (p *Provider) afterLogout(w http.ResponseWriter, r *http.Request, lr logoutRequest) {
	if lr.redirectURI != "" {
		u, _ := url.Parse(lr.redirectURI)
		if lr.state != "" {
			q := u.Query()
			q.Set("state", lr.state)
			u.RawQuery = q.Encode()
		}
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
		return
	}
	p.Templates.Render(w, http.StatusOK, "logout", "Signed out", "", logoutPage{Done: true})
}

// parseLogout validates the request; on a bad one it renders an error page
// and changes nothing. post_logout_redirect_uri is honoured only when the
// client is known (from the hint or client_id) and registered it exactly.
func (p *Provider) parseLogout(w http.ResponseWriter, r *http.Request) (logoutRequest, bool) {
	if err := r.ParseForm(); err != nil {
		p.Templates.Error(w, http.StatusBadRequest, "The sign-out request could not be read.", "")
		return logoutRequest{}, false
	}
	lr := logoutRequest{clientID: r.Form.Get("client_id"), state: r.Form.Get("state")}
	if h := r.Form.Get("id_token_hint"); h != "" {
		claims, err := p.verifyIDTokenHint(h)
		if err != nil {
			p.Templates.Error(w, http.StatusBadRequest, "The application sent a sign-out request this service did not issue.",
				"You were not signed out. Go back to the application, or sign out from your account page.")
			return logoutRequest{}, false
		}
		if lr.clientID != "" && !slices.Contains([]string(claims.Audience), lr.clientID) {
			p.Templates.Error(w, http.StatusBadRequest, "The sign-out request names an application the hint was not issued to.",
				"You were not signed out. Tell the application's owner.")
			return logoutRequest{}, false
		}
		if lr.clientID == "" && len(claims.Audience) == 1 {
			lr.clientID = claims.Audience[0]
		}
		lr.hint = &claims
	}
	if uri := r.Form.Get("post_logout_redirect_uri"); uri != "" {
		var c *clients.Client
		var err error
		if lr.clientID != "" {
			c, err = p.Clients.Get(r.Context(), lr.clientID)
		}
		if lr.clientID == "" || err != nil || !slices.Contains(c.PostLogoutRedirectURIs, uri) {
			p.Templates.Error(w, http.StatusBadRequest, "The application asked to send you to an address it has not registered.",
				"You were not signed out and not redirected. Tell the application's owner.")
			return logoutRequest{}, false
		}
		lr.redirectURI = uri
	}
	return lr, true
}

func (p *Provider) clientName(r *http.Request, id string) string {
	if id == "" {
		return ""
	}
	c, err := p.Clients.Get(r.Context(), id)
	if err != nil {
		return ""
	}
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}
