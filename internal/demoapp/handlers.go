package demoapp

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// pageData is what the templates get.
type pageData struct {
	App     string
	Issuer  string
	Session *session // nil when signed out
	CSRF    string
	Notice  string
	Error   string
	Hint    string
}

func (a *App) render(w http.ResponseWriter, status int, name string, data pageData) {
	data.App, data.Issuer = a.cfg.Name, a.cfg.Issuer
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		a.cfg.Logger.Error("demoapp: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (a *App) fail(w http.ResponseWriter, status int, msg, hint string) {
	a.render(w, status, "error.html", pageData{Error: msg, Hint: hint})
}

func (a *App) unreachable(w http.ResponseWriter, err error) {
	a.cfg.Logger.Error("demoapp: provider", "err", err)
	a.fail(w, http.StatusBadGateway, "The identity provider at "+a.cfg.Issuer+" could not be reached or gave an answer this app cannot use.",
		"Try again in a moment.")
}

// home shows who is signed in, or why nobody is.
func (a *App) home(w http.ResponseWriter, r *http.Request) {
	_, s, endedBy := a.currentSession(r)
	if s != nil {
		a.render(w, http.StatusOK, "home.html", pageData{Session: s, CSRF: s.csrf})
		return
	}
	var data pageData
	if endedBy != "" {
		data.Notice = "The identity provider ended your session here (" + endedBy + ")."
	}
	if state := r.URL.Query().Get("state"); state != "" {
		// Back from the provider's sign-out: say so only if this browser
		// started it.
		if p := a.takePending(w, r); p != nil && p.logout && subtle.ConstantTimeCompare([]byte(p.state), []byte(state)) == 1 {
			data.Notice = "You are signed out of " + a.cfg.Name + " and of the identity provider."
		}
	}
	a.render(w, http.StatusOK, "home.html", data)
}

// login starts the authorization code flow with PKCE, state and nonce.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	d, err := a.discover(r.Context())
	if err != nil {
		a.unreachable(w, err)
		return
	}
	p := &pending{state: randomToken(), nonce: randomToken(), verifier: oauth2.GenerateVerifier()}
	a.putPending(w, r, p)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier)}
	// /login?acr=phr asks for a passkey sign-in (a step-up when the person
	// is signed in with less); only the provider's values pass.
	switch acr := r.URL.Query().Get("acr"); acr {
	case "urn:idp:acr:mfa", "urn:idp:acr:phr":
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", acr))
	}
	http.Redirect(w, r, d.oauth.AuthCodeURL(p.state, opts...), http.StatusFound)
}

// callback finishes the sign-in: checks state, redeems the code with the
// PKCE verifier, verifies the ID token and its nonce, and starts a local
// session under a fresh cookie.
func (a *App) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p := a.takePending(w, r)
	if p == nil || p.logout || subtle.ConstantTimeCompare([]byte(p.state), []byte(q.Get("state"))) != 1 {
		a.fail(w, http.StatusBadRequest, "This sign-in was not started here, or it took too long.", "Sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "The identity provider did not sign you in (" + e + ")."
		if desc := q.Get("error_description"); desc != "" {
			msg += " It said: " + desc
		}
		a.fail(w, http.StatusBadRequest, msg, "Sign in again.")
		return
	}
	d, err := a.discover(ctx)
	if err != nil {
		a.unreachable(w, err)
		return
	}
	ctx = oidc.ClientContext(ctx, a.cfg.HTTP)
	tok, err := d.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		a.unreachable(w, err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		a.unreachable(w, errors.New("token response has no id_token"))
		return
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		a.unreachable(w, err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.nonce)) != 1 {
		a.fail(w, http.StatusBadRequest, "The identity provider's answer was not for this sign-in (nonce mismatch).", "Sign in again.")
		return
	}
	var claims struct {
		Email    string   `json:"email"`
		Name     string   `json:"name"`
		SID      string   `json:"sid"`
		AMR      []string `json:"amr"`
		ACR      string   `json:"acr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		a.unreachable(w, err)
		return
	}
	now := a.cfg.Now()
	s := &session{Subject: idt.Subject, Email: claims.Email, Name: claims.Name, SID: claims.SID, AMR: claims.AMR, ACR: claims.ACR,
		idToken: raw, csrf: randomToken(), expires: now.Add(sessionTTL)}
	if claims.AuthTime != 0 {
		s.AuthTime = time.Unix(claims.AuthTime, 0)
	}
	id := randomToken()
	old := a.cookie(r, "session")
	a.mu.Lock()
	a.sweep(now)
	delete(a.sessions, old)
	a.sessions[id] = s
	a.mu.Unlock()
	a.setCookie(w, "session", id, sessionTTL)
	a.cfg.Logger.Info("demoapp: signed in", "app", a.cfg.ClientID, "sub", s.Subject, "sid", s.SID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the local session and sends the browser to the provider's
// end_session_endpoint (RP-Initiated Logout 1.0), which ends the SSO
// session, tells the other apps over the back channel, and returns here.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	id, s, _ := a.currentSession(r)
	if s == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf_token")), []byte(s.csrf)) != 1 {
		a.fail(w, http.StatusForbidden, "The sign-out form could not be verified.", "Go back, reload the page and try again.")
		return
	}
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
	a.setCookie(w, "session", "", -1)

	d, err := a.discover(r.Context())
	if err != nil || d.endSession == "" {
		a.render(w, http.StatusOK, "home.html", pageData{
			Notice: "You are signed out of " + a.cfg.Name + ", but the identity provider could not be told: sign out there too."})
		return
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		a.unreachable(w, err)
		return
	}
	p := &pending{state: randomToken(), logout: true}
	a.putPending(w, r, p)
	v := u.Query()
	v.Set("id_token_hint", s.idToken)
	v.Set("post_logout_redirect_uri", a.cfg.HomeURL())
	v.Set("client_id", a.cfg.ClientID)
	v.Set("state", p.state)
	u.RawQuery = v.Encode()
	a.cfg.Logger.Info("demoapp: signing out", "app", a.cfg.ClientID, "sid", s.SID)
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// putPending remembers p under a fresh cookie, replacing the browser's
// previous one.
func (a *App) putPending(w http.ResponseWriter, r *http.Request, p *pending) {
	now := a.cfg.Now()
	p.expires = now.Add(pendingTTL)
	key := randomToken()
	old := a.cookie(r, "pending")
	a.mu.Lock()
	a.sweep(now)
	delete(a.pending, old)
	a.pending[key] = p
	a.mu.Unlock()
	a.setCookie(w, "pending", key, pendingTTL)
}

// takePending returns and forgets the browser's pending sign-in or sign-out:
// each is good for one return from the provider.
func (a *App) takePending(w http.ResponseWriter, r *http.Request) *pending {
	key := a.cookie(r, "pending")
	if key == "" {
		return nil
	}
	a.setCookie(w, "pending", "", -1)
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending[key]
	delete(a.pending, key)
	if p == nil || a.cfg.Now().After(p.expires) {
		return nil
	}
	return p
}

// endSessions marks the live sessions of sid (or, without a sid, of sub) as
// ended and returns how many there were.
func (a *App) endSessions(sid, sub, reason string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.sessions {
		if s.endedBy != "" {
			continue
		}
		match := sid != "" && s.SID == sid && (sub == "" || s.Subject == sub) ||
			sid == "" && sub != "" && s.Subject == sub
		if match {
			s.endedBy = reason
			s.idToken = ""
			n++
		}
	}
	return n
}

// Sessions reports how many live local sessions the app holds for sid; for
// tests and diagnostics.
func (a *App) Sessions(sid string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	now := a.cfg.Now()
	for _, s := range a.sessions {
		if s.endedBy == "" && s.SID == sid && now.Before(s.expires) {
			n++
		}
	}
	return n
}
