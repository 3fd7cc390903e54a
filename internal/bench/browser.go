package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// callbackHost is where the apps' redirect URIs point. Nothing listens
// there: a browser stops at the redirect to it and hands the code to the
// app, here the benchmark itself.
const callbackHost = "127.0.0.1:9"

// newTransport is the keep-alive transport of every simulated party, with
// enough idle connections for conns concurrent requests.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     90 * time.Second,
	}
}

// app is a relying party: a registered client, the x/oauth2 configuration
// it exchanges codes with, and a go-oidc verifier for its ID tokens.
type app struct {
	id, secret string
	conf       oauth2.Config
	verifier   *oidc.IDTokenVerifier
}

func newApp(p *oidc.Provider, id, secret string, scopes ...string) *app {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &app{id: id, secret: secret,
		conf: oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: ep,
			RedirectURL: "http://" + callbackHost + "/callback", Scopes: scopes},
		verifier: p.Verifier(&oidc.Config{ClientID: id}),
	}
}

// authRequest is one authorization request with PKCE, state and nonce.
type authRequest struct {
	state, nonce, verifier, url string
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *app) authRequest() authRequest {
	r := authRequest{state: randomHex(16), nonce: randomHex(16), verifier: oauth2.GenerateVerifier()}
	r.url = a.conf.AuthCodeURL(r.state, oidc.Nonce(r.nonce), oauth2.S256ChallengeOption(r.verifier))
	return r
}

// exchange trades a code for tokens with x/oauth2 and verifies the ID token
// with go-oidc, nonce included, as an app does.
func (a *app) exchange(ctx context.Context, hc *http.Client, code string, r authRequest) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	tok, err := a.conf.Exchange(ctx, code, oauth2.VerifierOption(r.verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange: %s", oauthErrorText(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("exchange: no id_token in the token response")
	}
	idt, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verify id token: %w", err)
	}
	if idt.Nonce != r.nonce {
		return nil, errors.New("verify id token: nonce mismatch")
	}
	if tok.AccessToken == "" {
		return nil, errors.New("exchange: no access token")
	}
	return tok, nil
}

// oauthErrorText is the error code of a failed token request, never the
// response body (which is safe today, but is not ours to print).
func oauthErrorText(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" {
			code = "no error code"
		}
		return fmt.Sprintf("HTTP %d %s", re.Response.StatusCode, code)
	}
	return err.Error()
}

// browser is a cookie-keeping user agent that follows redirects, except the
// one back to an app's redirect URI.
type browser struct {
	issuer string
	client *http.Client
}

func newBrowser(issuer string, tr http.RoundTripper) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{issuer: issuer, client: &http.Client{
		Transport: tr, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == callbackHost {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			return nil
		},
	}}
}

// page is a fetched response, body read.
type page struct {
	status   int
	path     string
	body     string
	location *url.URL // the app's callback, when the browser stopped there
}

func (b *browser) do(req *http.Request) (page, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		// The error names the URL, which carries no credential here: an
		// authorization request or a sign-in page.
		return page{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return page{}, err
	}
	p := page{status: resp.StatusCode, path: resp.Request.URL.Path, body: string(body)}
	if resp.StatusCode/100 == 3 {
		loc, err := resp.Location()
		if err == nil && loc.Host == callbackHost {
			p.location = loc
		}
	}
	return p, nil
}

func (b *browser) get(ctx context.Context, u string) (page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return page{}, err
	}
	return b.do(req)
}

func (b *browser) post(ctx context.Context, path string, form url.Values) (page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		return page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// form checks that p is the sign-in step at path showing an input with
// marker, and returns its CSRF token.
func (p page) form(path, marker string) (string, error) {
	if p.status != http.StatusOK || p.path != path || !strings.Contains(p.body, marker) {
		return "", fmt.Errorf("expected the %s form, got HTTP %d at %s", path, p.status, p.path)
	}
	m := csrfRe.FindStringSubmatch(p.body)
	if m == nil {
		return "", fmt.Errorf("no csrf_token on %s", path)
	}
	return m[1], nil
}

// code returns the authorization code of a browser stopped at the app's
// callback, after checking state.
func (p page) code(r authRequest) (string, error) {
	if p.location == nil {
		return "", fmt.Errorf("expected a redirect to the app, got HTTP %d at %s", p.status, p.path)
	}
	q := p.location.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != r.state {
		return "", errors.New("state mismatch on the callback")
	}
	c := q.Get("code")
	if c == "" {
		return "", errors.New("no code on the callback")
	}
	return c, nil
}

// silentCode starts the code flow for a in a browser that holds an SSO
// session: no page, straight back to the app with a code.
func (b *browser) silentCode(ctx context.Context, a *app) (string, authRequest, error) {
	r := a.authRequest()
	p, err := b.get(ctx, r.url)
	if err != nil {
		return "", r, err
	}
	code, err := p.code(r)
	return code, r, err
}

// signIn runs a whole sign-in for a: the authorization request lands on the
// password form, then (when totp is set) the code form with the code totp
// returns, then back at the authorization endpoint, which sends the browser
// to the app with a code.
func (b *browser) signIn(ctx context.Context, a *app, email, password string, totp func() string, extra ...oauth2.AuthCodeOption) (string, authRequest, error) {
	r := a.authRequest()
	if len(extra) > 0 {
		opts := append([]oauth2.AuthCodeOption{oidc.Nonce(r.nonce), oauth2.S256ChallengeOption(r.verifier)}, extra...)
		r.url = a.conf.AuthCodeURL(r.state, opts...)
	}
	p, err := b.get(ctx, r.url)
	if err != nil {
		return "", r, err
	}
	csrf, err := p.form("/login", `autocomplete="current-password"`)
	if err != nil {
		return "", r, err
	}
	p, err = b.post(ctx, "/login", url.Values{"csrf_token": {csrf}, "email": {email}, "password": {password}})
	if err != nil {
		return "", r, err
	}
	if totp != nil {
		if csrf, err = p.form("/login/totp", `autocomplete="one-time-code"`); err != nil {
			return "", r, err
		}
		if p, err = b.post(ctx, "/login/totp", url.Values{"csrf_token": {csrf}, "code": {totp()}}); err != nil {
			return "", r, err
		}
	}
	code, err := p.code(r)
	return code, r, err
}

// tokenResponse is what the token endpoint answers.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`
	Error        string `json:"error"`
}

// postForm POSTs form to the issuer's path with client authentication and
// decodes the JSON answer into v. A non-200 answer is an error naming the
// OAuth error code only.
func postForm(ctx context.Context, hc *http.Client, u, clientID, secret string, form url.Values, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e) //nolint:errcheck // best effort
		return fmt.Errorf("POST %s: HTTP %d %s", req.URL.Path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("POST %s: decode answer: %w", req.URL.Path, err)
	}
	return nil
}
