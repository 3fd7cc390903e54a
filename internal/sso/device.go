package sso

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sso/store"
	"github.com/idp/idp/web"
)

// The device authorization grant (RFC 8628). A device without a browser
// (a TV, a command line) asks the device authorization endpoint for a
// device code and a user code, shows the person the user code and the
// verification URI (/device on this provider), and polls the token
// endpoint (deviceGrant) while the person, signed in here in any browser,
// types the code, sees which app asks for what, and approves or denies.
// An approval binds the request to the person's SSO session: the tokens
// belong to it as a code's do, and the app holds a client session under its
// sid, so the session's end revokes them and tells the app.

// Defaults of the device grant.
const (
	DefaultDeviceCodeLifetime = 10 * time.Minute
	DefaultDevicePollInterval = 5 * time.Second
)

// userCodeAlphabet has no vowels (no words are spelt by chance) and none of
// the letters and digits read as one another (0/O, 1/I/L are out: L stays,
// it is unambiguous in upper case without I and 1). Eight of them are
// about 34.5 bits: at the throttle's pace nobody guesses a live code.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

const userCodeLen = 8

// deviceLifetime and devicePollInterval are the Provider's settings or
// their defaults.
func (p *Provider) deviceLifetime() time.Duration {
	if p.DeviceCodeLifetime > 0 {
		return p.DeviceCodeLifetime
	}
	return DefaultDeviceCodeLifetime
}

func (p *Provider) devicePollInterval() time.Duration {
	if p.DevicePollInterval > 0 {
		return p.DevicePollInterval.Round(time.Second)
	}
	return DefaultDevicePollInterval
}

// newUserCode draws a user code (unbiased: bytes past the last whole
// multiple of the alphabet's size are drawn again).
func newUserCode() string {
	const n = len(userCodeAlphabet)
	out := make([]byte, 0, userCodeLen)
	buf := make([]byte, 16)
	for len(out) < userCodeLen {
		rand.Read(buf)
		for _, b := range buf {
			if int(b) < 256-256%n && len(out) < userCodeLen {
				out = append(out, userCodeAlphabet[int(b)%n])
			}
		}
	}
	return string(out)
}

// normalizeUserCode is the code as typed, upper case, without the dash,
// spaces or anything else a person may add; "" when what remains is not a
// user code.
func normalizeUserCode(s string) string {
	if len(s) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		case r == '-' || r == ' ' || r == '\t':
		default:
			return ""
		}
	}
	if b.Len() != userCodeLen {
		return ""
	}
	return b.String()
}

// displayUserCode is the code as people read it: XXXX-XXXX.
func displayUserCode(c string) string { return c[:userCodeLen/2] + "-" + c[userCodeLen/2:] }

// deviceAuthorization is the device authorization endpoint (RFC 8628
// §3.1–3.2). The client authenticates as at the token endpoint (a public
// client by its client_id); errors are in fosite's format.
func (p *Provider) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	fail := func(err error) {
		err = p.oauthError(ctx, w, err)
		p.logServerError(ctx, "device authorization", err)
		p.OAuth2.WriteAccessError(ctx, w, nil, err)
	}
	if err := r.ParseForm(); err != nil {
		fail(fosite.ErrInvalidRequest.WithHint("The request body could not be read as a form."))
		return
	}
	client, err := p.OAuth2.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		fail(err)
		return
	}
	if !client.GetGrantTypes().Has(GrantTypeDeviceCode) {
		fail(fosite.ErrUnauthorizedClient.WithHint("The client is not allowed to use the device authorization grant."))
		return
	}
	scopes := fosite.RemoveEmpty(strings.Split(r.PostForm.Get("scope"), " "))
	for _, s := range scopes {
		if !p.OAuth2.Config.GetScopeStrategy(ctx)(client.GetScopes(), s) {
			fail(fosite.ErrInvalidScope.WithHintf("The client may not ask for the scope %q.", s))
			return
		}
	}
	audience := fosite.GetAudiences(r.PostForm)
	if err := p.OAuth2.Config.GetAudienceStrategy(ctx)(client.GetAudience(), audience); err != nil {
		fail(err)
		return
	}
	// Resource indicators (RFC 8707), checked as at the authorization
	// endpoint, are requested audience as there: a JWT access token of the
	// approved request names them (tokenAudience), and its token request
	// may narrow it to some of them.
	if err := resourceProblem(&fosite.Request{Client: client, Form: r.PostForm}, nil); err != nil {
		fail(err)
		return
	}
	audience = append(audience, r.PostForm["resource"]...)
	deviceCode := newDeviceCode()
	now := p.Now()
	var userCode string
	// A collision with a stored user code (of 20^8) is drawn again.
	for attempt := 0; ; attempt++ {
		userCode = newUserCode()
		err = p.Store.CreateDevice(ctx, store.NewDevice{
			DeviceCodeHash: store.HashSignature(deviceCode), UserCodeHash: store.HashSignature(userCode),
			ClientID: client.GetID(), Scopes: scopes, Audience: audience,
			CreatedAt: now, ExpiresAt: now.Add(p.deviceLifetime()), Interval: p.devicePollInterval(),
		})
		if !errors.Is(err, store.ErrUserCodeTaken) || attempt == 3 {
			break
		}
	}
	if err != nil {
		fail(fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
		return
	}
	verify := p.Issuer + "/device"
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               deviceCode,
		"user_code":                 displayUserCode(userCode),
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?" + url.Values{"user_code": {displayUserCode(userCode)}}.Encode(),
		"expires_in":                int(p.deviceLifetime() / time.Second),
		"interval":                  int(p.devicePollInterval() / time.Second),
	})
}

// newDeviceCode is 256 random bits: the device's only credential for its
// tokens besides its client id.
func newDeviceCode() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// devicePage is what /device shows.
type devicePage struct {
	// Step: "enter" (the code form), "confirm" (approve or deny), "done".
	Step     string
	UserCode string // as shown, XXXX-XXXX
	Problem  string // why the code was not accepted
	Client   string
	Scopes   []scopeText
	Approved bool
}

// deviceThrottleKey counts a person's wrong user codes: guessing a code is
// guessing another person's pending request, and a person signed in is the
// only one who can try.
func deviceThrottleKey(userID string) string { return "device-user-code:user:" + userID }

// deviceSession returns the signed-in session, or sends the person to
// sign in (with 2FA as policy requires) and back here; ok false when it
// has answered.
func (p *Provider) deviceSession(w http.ResponseWriter, r *http.Request, code string) (sessions.Session, bool) {
	ctx := r.Context()
	sess, err := p.Sessions.Current(ctx, r)
	if err == nil {
		return sess, true
	}
	if !errors.Is(err, sessions.ErrNoSession) {
		p.Errors.Internal(w, r, err)
		return sessions.Session{}, false
	}
	back := "/device"
	if code != "" {
		back += "?" + url.Values{"user_code": {displayUserCode(code)}}.Encode()
	}
	next, err := p.Login.Begin(ctx, w, login.Start{ReturnTo: back})
	if err != nil {
		p.Errors.Internal(w, r, err)
		return sessions.Session{}, false
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return sessions.Session{}, false
}

// deviceShow is GET /device: the code form, or, with a user code in the
// query (verification_uri_complete), the request it names to confirm. The
// code is shown on the confirmation so the person can compare it with the
// device's: a link with a code is what a phisher would send.
func (p *Provider) deviceShow(w http.ResponseWriter, r *http.Request) {
	web.NoStore(w)
	typed := r.URL.Query().Get("user_code")
	code := normalizeUserCode(typed)
	sess, ok := p.deviceSession(w, r, code)
	if !ok {
		return
	}
	if typed == "" {
		p.renderDevice(w, r, http.StatusOK, devicePage{Step: "enter"})
		return
	}
	p.deviceLookup(w, r, sess, typed)
}

// deviceEnter is POST /device: the typed code.
func (p *Provider) deviceEnter(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.deviceSession(w, r, "")
	if !ok {
		return
	}
	if !p.Sessions.CheckCSRF(r) {
		p.Errors.StaleForm(w, "Open /device again and type the code your device shows.")
		return
	}
	p.deviceLookup(w, r, sess, r.PostFormValue("user_code"))
}

// deviceLookup finds the pending request of a typed user code, throttling
// wrong ones, and shows it to confirm.
func (p *Provider) deviceLookup(w http.ResponseWriter, r *http.Request, sess sessions.Session, typed string) {
	d, code, status, problem, err := p.findDevice(r, sess, typed)
	if err != nil {
		p.Errors.Internal(w, r, err)
		return
	}
	if problem != "" {
		p.renderDevice(w, r, status, devicePage{Step: "enter", UserCode: typed, Problem: problem})
		return
	}
	page := devicePage{Step: "confirm", UserCode: displayUserCode(code), Client: p.clientName(r, d.ClientID)}
	for _, sc := range d.Scopes {
		text := scopeTexts[sc]
		if text == "" {
			text = "Use the permission “" + sc + "”"
		}
		page.Scopes = append(page.Scopes, scopeText{sc, text})
	}
	p.renderDevice(w, r, http.StatusOK, page)
}

// findDevice is the pending request of typed, or the problem to show
// (with its status) when there is none or the person must wait.
func (p *Provider) findDevice(r *http.Request, sess sessions.Session, typed string) (d store.Device, code string, status int, problem string, err error) {
	ctx := r.Context()
	key := deviceThrottleKey(sess.UserID)
	wait, err := p.DeviceLimiter.Wait(ctx, key)
	if err != nil {
		return d, "", 0, "", err
	}
	if wait > 0 {
		return d, "", http.StatusTooManyRequests, "Too many wrong codes. Try again in " + pages.Duration(wait) + ".", nil
	}
	code = normalizeUserCode(typed)
	if code != "" {
		d, err = p.Store.PendingDevice(ctx, store.HashSignature(code))
	}
	if code == "" || errors.Is(err, fosite.ErrNotFound) {
		if err := p.DeviceLimiter.Fail(ctx, key); err != nil {
			return d, "", 0, "", err
		}
		return d, "", http.StatusBadRequest, "That code is not valid, or it has expired or been used. Check the code your device shows, or start again on the device.", nil
	}
	if err != nil {
		return d, "", 0, "", err
	}
	return d, code, http.StatusOK, "", nil
}

// deviceDecide is POST /device/decision: approve or deny.
func (p *Provider) deviceDecide(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	web.NoStore(w)
	sess, user, err := p.Sessions.CurrentUser(ctx, r)
	if errors.Is(err, sessions.ErrNoSession) {
		p.Errors.StaleForm(w, "Your sign-in has ended. Open /device again and sign in.")
		return
	}
	if err != nil {
		p.Errors.Internal(w, r, err)
		return
	}
	if !p.Sessions.CheckCSRF(r) {
		p.Errors.StaleForm(w, "Open /device again and type the code your device shows.")
		return
	}
	decision := r.PostFormValue("decision")
	if decision != "approve" && decision != "deny" {
		p.Templates.Error(w, http.StatusBadRequest, "The form did not say whether to approve or deny.", "Open /device again.")
		return
	}
	d, code, status, problem, err := p.findDevice(r, sess, r.PostFormValue("user_code"))
	if err != nil {
		p.Errors.Internal(w, r, err)
		return
	}
	if problem != "" {
		p.renderDevice(w, r, status, devicePage{Step: "enter", UserCode: r.PostFormValue("user_code"), Problem: problem})
		return
	}
	dec := store.Decision{UserCodeHash: store.HashSignature(code), Approve: decision == "approve"}
	uctx, unit := p.Store.Pipeline(ctx)
	if dec.Approve {
		c, err := p.Clients.Get(ctx, d.ClientID)
		if err != nil {
			unit.Rollback(uctx)
			p.Errors.Internal(w, r, err)
			return
		}
		for _, s := range d.Scopes {
			// As at the authorization endpoint: admin only to an
			// administrator's two-factor session.
			if s == clients.AdminScope && !(user.IsAdmin && sess.MultiFactor()) {
				continue
			}
			dec.GrantedScopes = append(dec.GrantedScopes, s)
		}
		dec.SID, dec.Subject = sess.ID, user.ID
		dec.Session = p.newSession(user, sess, c, dec.GrantedScopes)
		if err := p.Store.QueueDecide(uctx, dec); err != nil {
			unit.Rollback(uctx)
			p.Errors.Internal(w, r, err)
			return
		}
		// The app now holds a session under this sid: its end tells it.
		p.Sessions.QueueAddClient(uctx, sess.ID, d.ClientID)
	} else if err := p.Store.QueueDecide(uctx, dec); err != nil {
		unit.Rollback(uctx)
		p.Errors.Internal(w, r, err)
		return
	}
	err = unit.Commit(uctx)
	switch {
	case errors.Is(err, fosite.ErrNotFound):
		p.renderDevice(w, r, http.StatusConflict, devicePage{Step: "enter",
			Problem: "This request was decided already, or it has expired. Start again on the device if it is still waiting."})
		return
	case errors.Is(err, sessions.ErrSessionEnded), errors.Is(err, sessions.ErrNoSession):
		p.Errors.StaleForm(w, "Your sign-in has ended. Open /device again and sign in.")
		return
	case err != nil:
		p.Errors.Internal(w, r, err)
		return
	}
	if dec.Approve {
		// A right code is no guess.
		p.DeviceLimiter.Reset(ctx, deviceThrottleKey(sess.UserID))
	}
	p.renderDevice(w, r, http.StatusOK, devicePage{Step: "done", Client: p.clientName(r, d.ClientID), Approved: dec.Approve})
}

func (p *Provider) renderDevice(w http.ResponseWriter, r *http.Request, status int, page devicePage) {
	title := "Connect a device"
	p.Templates.Render(w, status, "device", title, p.Sessions.CSRFToken(r), page)
}
