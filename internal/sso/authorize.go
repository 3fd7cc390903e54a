package sso

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// authorize is the authorization endpoint. It decides, from the request and
// the central SSO session, whether the person must sign in (or give a second
// factor) first; login hands control back here when they have.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	web.NoStore(w)
	if !p.checkClientAndRedirect(w, r) {
		return
	}
	if err := requestObjectProblem(r.Form); err != nil {
		p.authorizeError(w, r, nil, err)
		return
	}
	if pushed(r.Form) {
		onlyPushed(r.Form)
	}
	ar, err := p.OAuth2.NewAuthorizeRequest(ctx, r)
	if err == nil {
		err = requirePARProblem(ar)
	}
	if err == nil {
		err = pkceProblem(ar)
	}
	if err == nil {
		err = resourceProblem(ar, nil)
	}
	if err == nil {
		err = dpopJKTProblem(ar)
	}
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	form := ar.GetRequestForm()
	prompt := strings.Fields(form.Get("prompt"))

	sess, user, err := p.Sessions.CurrentUser(ctx, r)
	hasSession := err == nil
	if err != nil && !errors.Is(err, sessions.ErrNoSession) {
		p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	needLogin := !hasSession || slices.Contains(prompt, "login") || p.maxAgeExceeded(sess, form.Get("max_age")) ||
		p.hintNamesSomeoneElse(r, form.Get("id_token_hint"), sess)
	want := wantedACR(form.Get("acr_values"))
	needStepUp := !needLogin && want != "" && !sessions.ACRSatisfies(sess.ACR, want)

	if needStepUp && want == sessions.ACRPhishingResistant && !slices.Contains(prompt, "none") {
		// Only a passkey reaches that class: someone without one is told
		// how to get one rather than asked for what they cannot give.
		has, err := p.hasPasskey(r, sess.UserID)
		if err != nil {
			p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		if !has {
			p.Templates.Error(w, http.StatusForbidden, "This application asks you to sign in with a passkey, and your account has none yet.",
				"Add a passkey on your account page (/account), then go back to the application and sign in again.")
			return
		}
	}
	if needLogin || needStepUp {
		var stepUp *sessions.Session
		if needStepUp {
			stepUp = &sess
		}
		p.signInFirst(w, r, ar, stepUp, want)
		return
	}

	for _, scope := range ar.GetRequestedScopes() {
		// admin is granted only to an administrator's two-factor session,
		// whatever the client may ask; the app learns it from the token's
		// scope, and may ask again with acr_values for the second factor.
		if scope == clients.AdminScope && !(user.IsAdmin && sess.MultiFactor()) {
			continue
		}
		ar.GrantScope(scope)
	}
	// Resource indicators (RFC 8707, checked above) are requested
	// audience: stored so with the code, they bound what its token
	// request may ask for.
	ar.SetRequestedAudience(append(append(fosite.Arguments{}, ar.GetRequestedAudience()...), form["resource"]...))
	for _, aud := range ar.GetRequestedAudience() {
		ar.GrantAudience(aud)
	}
	client, _ := ar.GetClient().(*clients.Client)
	proceed, allowed := p.consent(w, r, ar, sess, client, prompt)
	if !proceed {
		return
	}
	// The code (with its PKCE and OpenID Connect sessions) and the client
	// session are written in one round trip before the code is handed out
	// (a failed authorization's writes are never sent), without waiting for
	// the disk: the code is worthless until its exchange commits,
	// synchronously and later in the same WAL, which makes these writes
	// durable too. Lost in a crash before that, they take the code with
	// them, so no app can hold a session the provider does not know about.
	uctx, unit := p.Store.Pipeline(ctx)
	if allowed {
		p.queueSaveConsent(unit, sess.UserID, client.ID, ar.GetGrantedScopes())
	}
	resp, err := p.OAuth2.NewAuthorizeResponse(uctx, ar, p.newSession(user, sess, client, ar.GetGrantedScopes()))
	if err != nil {
		unit.Rollback(uctx)
		p.authorizeError(w, r, ar, err)
		return
	}
	p.Sessions.QueueAddClient(uctx, sess.ID, ar.GetClient().GetID())
	err = unit.CommitAsync(uctx)
	if errors.Is(err, sessions.ErrNoSession) {
		// The session ended (signed out elsewhere, revoked) since it was
		// read: the code went with it, and the person signs in again.
		p.signInFirst(w, r, ar, nil, want)
		return
	}
	if err != nil {
		p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	p.redirectResponse(ctx, w, ar, resp)
}

// pkceProblem is what is wrong with ar's PKCE, or nil. fosite checks PKCE
// only when issuing the code; checking the request tells the app at once
// instead of after the person has signed in.
func pkceProblem(ar fosite.AuthorizeRequester) error {
	form := ar.GetRequestForm()
	if m := form.Get("code_challenge_method"); m != "" && m != "S256" {
		return fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256.")
	}
	if ar.GetClient().IsPublic() && form.Get("code_challenge") == "" {
		return fosite.ErrInvalidRequest.WithHint("Public clients must use PKCE (code_challenge with S256).")
	}
	return nil
}

// signInFirst sends the person to sign in (or, with stepUp, to give a
// second factor, or a passkey when want is ACRPhishingResistant) and back
// to this authorization afterwards; with prompt=none the app gets
// login_required instead.
func (p *Provider) signInFirst(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, stepUp *sessions.Session, want string) {
	ctx := r.Context()
	form := ar.GetRequestForm()
	if slices.Contains(strings.Fields(form.Get("prompt")), "none") {
		p.redirectError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("The person is not signed in, or must sign in again."))
		return
	}
	if want != sessions.ACRPhishingResistant {
		want = ""
	}
	resume, err := p.resumption(ctx, ar, resumeQuery(form))
	if err != nil {
		p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	next, err := p.Login.Begin(ctx, w, login.Start{AuthorizeQuery: resume, LoginHint: form.Get("login_hint"),
		StepUp: stepUp, Want: want})
	if err != nil {
		p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// newSession is what fosite stores with the code: the ID token's claims
// carry sid, auth_time, amr and acr from the SSO session.
func (p *Provider) newSession(u users.User, s sessions.Session, c *clients.Client, scopes fosite.Arguments) *openid.DefaultSession {
	extra := map[string]interface{}{"sid": s.ID}
	if scopes.Has("email") {
		extra["email"] = u.Email
		if u.EmailVerified() {
			// Left out, never false, for an unproven address (as
			// userinfo does: oauth2-proxy refuses false by default).
			extra["email_verified"] = true
		}
	}
	if scopes.Has("profile") && u.Name != "" {
		extra["name"] = u.Name
	}
	alg := "RS256"
	if c != nil && c.IDTokenAlg != "" {
		alg = c.IDTokenAlg
	}
	return &openid.DefaultSession{
		Claims: &jwt.IDTokenClaims{
			Subject:                             u.ID,
			Issuer:                              p.Issuer,
			AuthTime:                            s.AuthTime,
			RequestedAt:                         p.Now().UTC(),
			AuthenticationMethodsReferences:     s.AMR,
			AuthenticationContextClassReference: s.ACR,
			Extra:                               extra,
		},
		Headers:  &jwt.Headers{Extra: map[string]interface{}{headerAlg: alg}},
		Subject:  u.ID,
		Username: u.Email,
	}
}

// authorizeParams are the authorization request's parameters this
// provider knows (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1, RFC 7636,
// and fosite's audience), each with the most bytes a value may hold. Only
// these are carried through a sign-in (resumeQuery) or a consent page;
// anything else an app or a stranger adds is dropped there.
var authorizeParams = map[string]int{
	"response_type": 64, "response_mode": 32, "client_id": 64, "redirect_uri": 2048,
	"scope": 1024, "state": 4096, "nonce": 1024, "prompt": 64, "max_age": 16,
	"display": 16, "ui_locales": 256, "claims_locales": 256, "login_hint": 512,
	"id_token_hint": 8192, "acr_values": 512, "code_challenge": 128, "code_challenge_method": 16,
	"audience": 1024, "resource": 2048, "dpop_jkt": 64,
}

// oversizeParam names the first known parameter of form with a value
// longer than it may be ("" if none).
func oversizeParam(form url.Values) (name string, limit int) {
	for k, vs := range form {
		limit, known := authorizeParams[k]
		for _, v := range vs {
			if known && len(v) > limit {
				return k, limit
			}
		}
	}
	return "", 0
}

// knownParams is form with only the parameters in authorizeParams.
func knownParams(form url.Values) url.Values {
	q := url.Values{}
	for k, v := range form {
		if _, ok := authorizeParams[k]; ok {
			q[k] = slices.Clone(v)
		}
	}
	return q
}

// resumeQuery is the request to come back to after signing in: its known
// parameters only, which checkClientAndRedirect has bounded. The fresh
// sign-in satisfies prompt=login and max_age, so they are dropped: asked
// again they would send the person round in a loop.
func resumeQuery(form url.Values) url.Values {
	q := knownParams(form)
	q.Del("max_age")
	var keep []string
	for _, p := range strings.Fields(q.Get("prompt")) {
		if p != "login" {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		q.Del("prompt")
	} else {
		q.Set("prompt", strings.Join(keep, " "))
	}
	return q
}

func (p *Provider) maxAgeExceeded(s sessions.Session, maxAge string) bool {
	if maxAge == "" {
		return false
	}
	n, err := strconv.ParseInt(maxAge, 10, 64)
	if err != nil || n < 0 {
		return false // fosite rejects it as invalid_request
	}
	return p.Now().Sub(s.AuthTime).Seconds() > float64(n)
}

// hintNamesSomeoneElse reports whether id_token_hint names a different user
// than the signed-in one; that person must sign in (or prompt=none fails).
func (p *Provider) hintNamesSomeoneElse(r *http.Request, hint string, s sessions.Session) bool {
	if hint == "" || s.UserID == "" {
		return false
	}
	claims, err := p.verifyIDTokenHint(hint)
	if err != nil {
		return false // fosite reports the malformed hint
	}
	return claims.Subject != s.UserID
}

// isServiceAccount reports whether c is an admin service account. The
// mark is read from the client as fosite loaded it (cached for seconds);
// the admin API checks it afresh on every request.
func isServiceAccount(c fosite.Client) bool {
	cl, ok := c.(*clients.Client)
	return ok && cl.AdminServiceAccount
}

// wantedACR is the class of sign-in acr_values asks for: of the values
// this provider knows, the weakest, since any of them will do (they are
// listed in order of preference, and a stronger sign-in meets a weaker
// demand). "" when it asks for none this provider issues beyond a
// password.
func wantedACR(acrValues string) string {
	want := ""
	for _, v := range strings.Fields(acrValues) {
		switch v {
		case sessions.ACRPassword, "pwd":
			return ""
		case sessions.ACRMFA, "mfa":
			want = sessions.ACRMFA
		case sessions.ACRPhishingResistant, "phr":
			if want == "" {
				want = sessions.ACRPhishingResistant
			}
		}
	}
	return want
}

// hasPasskey reports whether the user could step up to a passkey.
func (p *Provider) hasPasskey(r *http.Request, userID string) (bool, error) {
	if p.Passkeys == nil {
		return false, nil
	}
	return p.Passkeys.Registered(r.Context(), userID)
}

// checkClientAndRedirect renders an error page — never a redirect — for an
// unknown client or a redirect_uri that is not, character for character,
// one the client registered. fosite would accept loopback URIs on any port
// (RFC 8252); a web SSO provider should not.
func (p *Provider) checkClientAndRedirect(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		p.Templates.Error(w, http.StatusBadRequest, "The sign-in request could not be read.", "Go back to the application and try again.")
		return false
	}
	for _, vs := range r.Form {
		for _, v := range vs {
			if strings.ContainsRune(v, 0) {
				p.Templates.Error(w, http.StatusBadRequest, "The sign-in request contains invalid characters.", "Go back to the application and try again.")
				return false
			}
		}
	}
	if name, limit := oversizeParam(r.Form); name != "" {
		p.Templates.Error(w, http.StatusBadRequest, fmt.Sprintf("The sign-in request's %s is too long (more than %d bytes).", name, limit),
			"Go back to the application and try again, or tell its owner.")
		return false
	}
	id := r.Form.Get("client_id")
	c, err := p.Clients.Get(r.Context(), id)
	if id == "" || errors.Is(err, clients.ErrNotFound) {
		p.Templates.Error(w, http.StatusBadRequest, "The application that sent you here is not registered with this sign-in service.",
			"Go back to the application and tell its owner; you were not signed in anywhere.")
		return false
	}
	if err != nil {
		p.Errors.Internal(w, r, err)
		return false
	}
	if uri := r.Form.Get("redirect_uri"); uri != "" && !slices.Contains(c.RedirectURIs, uri) {
		p.Templates.Error(w, http.StatusBadRequest, "The application asked to send you back to an address it has not registered.",
			"For your safety you were not sent there. Tell the application's owner.")
		return false
	}
	return true
}

// authorizeError follows the spec: errors go back to the client's redirect
// URI when it is known to be the client's, and to an HTML page otherwise.
// A database that could not serve the request is temporarily_unavailable
// (RFC 6749 §4.1.2.1), which apps may act on by trying again later.
func (p *Provider) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	err = p.oauthError(r.Context(), w, err)
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 && rfc.CodeField != http.StatusServiceUnavailable {
		p.Logger.ErrorContext(r.Context(), "authorize", "request_id", ops.RequestID(r.Context()), "err", err)
	}
	if ar == nil || !ar.IsRedirectURIValid() {
		if rfc.CodeField >= 500 {
			p.Errors.Internal(w, r, err)
			return
		}
		p.Templates.Error(w, http.StatusBadRequest, "The sign-in request is not valid: "+rfc.GetDescription(),
			"Go back to the application and try again, or tell its owner.")
		return
	}
	p.redirectError(r.Context(), w, ar, err)
}
