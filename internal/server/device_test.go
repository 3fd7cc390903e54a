package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

// deviceApp is a device (a TV app, a command line) registered as RFC 8628
// asks: public, with the device and refresh grants and no redirect URI,
// the way `idp clients create --public --grant-type
// urn:ietf:params:oauth:grant-type:device_code --grant-type refresh_token`
// registers it. Its tokens are for the resource server api.
type deviceApp struct {
	conf oauth2.Config
	recv *servertest.Receiver
	api  *servertest.RP
}

func newDeviceApp(t *testing.T, h *servertest.Harness) deviceApp {
	t.Helper()
	// One-second polls keep the test short.
	h.Srv.Provider.DevicePollInterval = time.Second
	recv := h.NewReceiver("tv")
	_, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "tv", Name: "TV app", Public: true,
		GrantTypes:           []string{clients.GrantDeviceCode, clients.GrantRefreshToken},
		Scopes:               []string{"openid", "profile", "offline_access"},
		Audience:             []string{"api"},
		BackchannelLogoutURI: recv.URL, BackchannelLogoutSessionRequired: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	api := h.NewRP("api", func(c *clients.Client) { c.GrantTypes = []string{clients.GrantClientCredentials} })
	// The device's endpoints come from discovery, as a client library's
	// would.
	var disc struct {
		Device string   `json:"device_authorization_endpoint"`
		Token  string   `json:"token_endpoint"`
		Grants []string `json:"grant_types_supported"`
	}
	getJSON(t, h.Issuer+"/.well-known/openid-configuration", &disc)
	if disc.Device != h.Issuer+"/oauth2/device/auth" || !contains(disc.Grants, clients.GrantDeviceCode) {
		t.Fatalf("discovery: device_authorization_endpoint %q, grant_types_supported %v", disc.Device, disc.Grants)
	}
	return deviceApp{recv: recv, api: api, conf: oauth2.Config{ClientID: "tv", Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: disc.Device, TokenURL: disc.Token, AuthStyle: oauth2.AuthStyleInParams}}}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func (d deviceApp) auth(t *testing.T) *oauth2.DeviceAuthResponse {
	t.Helper()
	da, err := d.conf.DeviceAuth(context.Background(), oauth2.SetAuthURLParam("audience", "api"))
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	return da
}

// poll is one token request of the device, written from RFC 8628 §3.4: the
// error code it got, or "" for tokens.
func (d deviceApp) poll(t *testing.T, deviceCode string) string {
	t.Helper()
	resp, err := http.PostForm(d.conf.Endpoint.TokenURL, url.Values{"grant_type": {clients.GrantDeviceCode},
		"device_code": {deviceCode}, "client_id": {"tv"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error       string `json:"error"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Error == "" && out.AccessToken == "" {
		t.Fatalf("poll: status %d, neither an error nor a token", resp.StatusCode)
	}
	if out.Error != "" && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("poll: %s with status %d, want 400", out.Error, resp.StatusCode)
	}
	return out.Error
}

// decide signs the browser in if need be from the verification URI
// (complete, so the code is filled in), checks what the page shows, and
// approves or denies.
func decide(t *testing.T, br *servertest.Browser, da *oauth2.DeviceAuthResponse, email, decision string) servertest.Page {
	t.Helper()
	p := br.Get(da.VerificationURIComplete)
	if p.IsLoginForm() {
		p = br.SignIn(da.VerificationURIComplete, email, password)
	}
	if p.URL.Path != "/device" || !strings.Contains(p.Body, `id="device-approve"`) {
		t.Fatalf("expected the device confirmation, got %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	if !strings.Contains(p.Body, "TV app") || !strings.Contains(p.Body, da.UserCode) || !strings.Contains(p.Body, "See your name") {
		t.Fatalf("the confirmation does not name the app, the code and the scopes:\n%s", p.Body)
	}
	return br.Post(p.URL.Scheme+"://"+p.URL.Host+"/device/decision", url.Values{"csrf_token": {p.CSRF(t)},
		"user_code": {da.UserCode}, "decision": {decision}})
}

// TestDevice_Grant: a device gets tokens with golang.org/x/oauth2's
// DeviceAuth and DeviceAccessToken while the person approves on /device;
// the tokens belong to the approving SSO session, so a revoke-all kills them
// and tells the app.
func TestDevice_Grant(t *testing.T) {
	h := servertest.New(t)
	alice := h.CreateUser("alice@example.com", password)
	dev := newDeviceApp(t, h)

	da := dev.auth(t)
	if len(da.UserCode) != 9 || da.UserCode[4] != '-' || strings.ContainsAny(da.UserCode, "AEIOU01") ||
		da.VerificationURI != h.Issuer+"/device" || da.Interval != 1 || da.Expiry.Before(time.Now().Add(9*time.Minute)) {
		t.Fatalf("device authorization response: %+v", da)
	}
	type result struct {
		tok *oauth2.Token
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tok, err := dev.conf.DeviceAccessToken(ctx, da)
		done <- result{tok, err}
	}()
	// Let the device poll while the person has not decided yet.
	time.Sleep(1500 * time.Millisecond)
	br := servertest.NewBrowser(t)
	p := decide(t, br, da, "alice@example.com", "approve")
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="device-done"`) {
		t.Fatalf("approval: %d\n%s", p.Status, p.Body)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("DeviceAccessToken: %v", res.err)
	}
	tok := res.tok
	if tok.RefreshToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token: %+v", tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	prov, err := oidc.NewProvider(h.Ctx, h.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: "tv"}).Verify(h.Ctx, raw)
	if err != nil {
		t.Fatalf("id token: %v", err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	idt.Claims(&claims)
	if idt.Subject != alice.ID || claims.SID == "" {
		t.Fatalf("id token: sub %q sid %q", idt.Subject, claims.SID)
	}

	in := dev.api.Introspect(t, tok.AccessToken)
	if in["active"] != true || in["client_id"] != "tv" || in["sub"] != alice.ID || in["scope"] != "openid profile" {
		t.Fatalf("introspection by the resource server: %v", in)
	}
	var sid string
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT sid::text FROM oauth_refresh_tokens WHERE client_id = 'tv'`).Scan(&sid); err != nil || sid != claims.SID {
		t.Fatalf("the refresh token's sid = %q (%v), want the approving session %s", sid, err, claims.SID)
	}
	if code := dev.poll(t, da.DeviceCode); code != "invalid_grant" {
		t.Errorf("a spent device code: %q, want invalid_grant", code)
	}

	// Refresh works, within the session.
	fresh, err := dev.conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}

	res2, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: alice.ID, Reason: sessions.ReasonAdminRevoke,
		IncludeOffline: true, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Sessions != 1 || res2.Notifications != 1 {
		t.Fatalf("revoke = %+v, want 1 session and the device app told", res2)
	}
	got := dev.recv.WaitFor(t, 1)
	if got[0].SID != claims.SID || got[0].Subject != alice.ID {
		t.Errorf("logout token for sid %s sub %s, want %s %s", got[0].SID, got[0].Subject, claims.SID, alice.ID)
	}
	if in := dev.api.Introspect(t, fresh.AccessToken); in["active"] != false {
		t.Errorf("after revoke-all the device's access token is %v", in)
	}
	_, err = dev.conf.TokenSource(h.Ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("refresh after revoke-all: %v, want invalid_grant", err)
	}
}

// TestDevice_RequireMFA: with IDP_REQUIRE_MFA a person without a second
// factor who follows the device's link enrolls one before the device page.
func TestDevice_RequireMFA(t *testing.T) {
	h := servertest.New(t, func(c *server.Config) { c.RequireMFA = true })
	h.CreateUser("alice@example.com", password)
	dev := newDeviceApp(t, h)
	da := dev.auth(t)
	br := servertest.NewBrowser(t)
	p := br.SignIn(da.VerificationURIComplete, "alice@example.com", password)
	_, _, p = enroll(t, h, br, p, time.Now())
	if p.URL.Path != "/device" || !strings.Contains(p.Body, `id="device-approve"`) || !strings.Contains(p.Body, da.UserCode) {
		t.Fatalf("after enrolling: %s (%d), want the device confirmation:\n%s", p.URL, p.Status, p.Body)
	}
	p = br.Post(h.Issuer+"/device/decision", url.Values{"csrf_token": {p.CSRF(t)}, "user_code": {da.UserCode}, "decision": {"approve"}})
	if !strings.Contains(p.Body, "Device connected") {
		t.Fatalf("approval:\n%s", p.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dev.conf.DeviceAccessToken(ctx, da); err != nil {
		t.Fatal(err)
	}
	var acr string
	if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT s.acr FROM oauth_access_tokens a JOIN sso_sessions s ON s.id = a.sid
		WHERE a.client_id = 'tv'`).Scan(&acr); err != nil || acr != sessions.ACRMFA {
		t.Fatalf("the device token's session acr = %q (%v), want %s", acr, err, sessions.ACRMFA)
	}
}

// TestDevice_Refused: each way a device request does not get tokens, with
// RFC 8628's error.
func TestDevice_Refused(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	dev := newDeviceApp(t, h)
	br := servertest.NewBrowser(t)

	t.Run("denied", func(t *testing.T) {
		da := dev.auth(t)
		p := decide(t, br, da, "alice@example.com", "deny")
		if !strings.Contains(p.Body, "Request denied") {
			t.Fatalf("denial page:\n%s", p.Body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := dev.conf.DeviceAccessToken(ctx, da)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
			t.Fatalf("DeviceAccessToken after a denial: %v, want access_denied", err)
		}
		var n int
		h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM oauth_access_tokens WHERE client_id = 'tv'`).Scan(&n)
		if n != 0 {
			t.Errorf("%d access tokens after a denial", n)
		}
	})

	t.Run("polling too fast", func(t *testing.T) {
		da := dev.auth(t)
		if code := dev.poll(t, da.DeviceCode); code != "authorization_pending" {
			t.Fatalf("first poll: %q, want authorization_pending", code)
		}
		if code := dev.poll(t, da.DeviceCode); code != "slow_down" {
			t.Fatalf("an immediate second poll: %q, want slow_down", code)
		}
		// The interval is now 6 seconds: a poll a second later is too fast.
		time.Sleep(1100 * time.Millisecond)
		if code := dev.poll(t, da.DeviceCode); code != "slow_down" {
			t.Fatalf("a poll 1s later after slow_down: %q, want slow_down", code)
		}
	})

	t.Run("expired code", func(t *testing.T) {
		da := dev.auth(t)
		if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE oauth_device_codes SET expires_at = now() - interval '1 second'
			WHERE status = 'pending'`); err != nil {
			t.Fatal(err)
		}
		if code := dev.poll(t, da.DeviceCode); code != "expired_token" {
			t.Fatalf("poll of an expired code: %q, want expired_token", code)
		}
		p := br.Get(da.VerificationURIComplete)
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `id="device-problem"`) {
			t.Fatalf("/device with an expired code: %d\n%s", p.Status, p.Body)
		}
	})

	t.Run("wrong user code", func(t *testing.T) {
		da := dev.auth(t)
		p := br.Get(h.Issuer + "/device")
		csrf := p.CSRF(t)
		// A code of the alphabet that is not this one, a code with a
		// vowel, and nonsense; then the throttle answers.
		wrong := "BBBB-BBBB"
		if da.UserCode == wrong {
			wrong = "CCCC-CCCC"
		}
		var statuses []int
		for _, c := range []string{wrong, "AEIO-UBCD", "x", wrong, wrong, wrong, wrong} {
			p := br.Post(h.Issuer+"/device", url.Values{"csrf_token": {csrf}, "user_code": {c}})
			if !strings.Contains(p.Body, `id="device-problem"`) || strings.Contains(p.Body, `id="device-approve"`) {
				t.Fatalf("a wrong code %q was not refused:\n%s", c, p.Body)
			}
			statuses = append(statuses, p.Status)
		}
		if statuses[0] != http.StatusBadRequest || statuses[len(statuses)-1] != http.StatusTooManyRequests {
			t.Fatalf("statuses %v: want 400 first and 429 once throttled", statuses)
		}
		// Even the right code waits now.
		p = br.Post(h.Issuer+"/device", url.Values{"csrf_token": {csrf}, "user_code": {da.UserCode}})
		if p.Status != http.StatusTooManyRequests {
			t.Fatalf("the right code while throttled: %d", p.Status)
		}
		// Without the CSRF token nothing is looked up.
		p = br.Post(h.Issuer+"/device", url.Values{"user_code": {da.UserCode}})
		if p.Status != http.StatusForbidden {
			t.Fatalf("no csrf token: %d", p.Status)
		}
	})

	t.Run("session ended before the poll", func(t *testing.T) {
		bob := h.CreateUser("bob@example.com", password)
		da := dev.auth(t)
		decide(t, servertest.NewBrowser(t), da, "bob@example.com", "approve")
		if _, err := h.Srv.Sessions.Revoke(h.Ctx, sessions.Revocation{UserID: bob.ID, Reason: sessions.ReasonUserSignOutAll}); err != nil {
			t.Fatal(err)
		}
		if code := dev.poll(t, da.DeviceCode); code != "invalid_grant" {
			t.Fatalf("poll after the approving session ended: %q, want invalid_grant", code)
		}
		var n int
		h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM oauth_access_tokens WHERE subject = $1`, bob.ID).Scan(&n)
		if n != 0 {
			t.Errorf("%d access tokens for a session that had ended", n)
		}
	})

	t.Run("two polls at once", func(t *testing.T) {
		// Alice is throttled by now.
		h.CreateUser("carol@example.com", password)
		da := dev.auth(t)
		decide(t, servertest.NewBrowser(t), da, "carol@example.com", "approve")
		codes := make(chan string, 2)
		for range 2 {
			go func() { codes <- dev.poll(t, da.DeviceCode) }()
		}
		got := []string{<-codes, <-codes}
		if !(got[0] == "" && got[1] == "invalid_grant") && !(got[1] == "" && got[0] == "invalid_grant") {
			t.Fatalf("two concurrent polls of an approved code: %q, want tokens once and invalid_grant", got)
		}
	})

	t.Run("client without the grant", func(t *testing.T) {
		// x/oauth2's DeviceAuth sends no client secret: the request is
		// written here, authenticated as a confidential client.
		req, _ := http.NewRequest("POST", dev.conf.Endpoint.DeviceAuthURL, strings.NewReader(url.Values{"scope": {"openid"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("api", dev.api.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusBadRequest || out.Error != "unauthorized_client" {
			t.Fatalf("device authorization of a client without the grant: %d %q, want 400 unauthorized_client", resp.StatusCode, out.Error)
		}
		// And an unknown client is invalid_client.
		conf := dev.conf
		conf.ClientID = "nobody"
		_, err = conf.DeviceAuth(context.Background())
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
			t.Fatalf("device authorization of an unknown client: %v, want invalid_client", err)
		}
	})

	t.Run("scope the client may not ask for", func(t *testing.T) {
		_, err := dev.conf.DeviceAuth(context.Background(), oauth2.SetAuthURLParam("scope", "openid email"))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
			t.Fatalf("device authorization with scope email: %v, want invalid_scope", err)
		}
	})
}

// TestDevice_Resource: a device authorization request names its resource
// (RFC 8707) as the authorization endpoint's does: the device's JWT
// access token has it as aud; a resource the client may not ask for is
// invalid_target and nothing is stored.
func TestDevice_Resource(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser("alice@example.com", password)
	h.Srv.Provider.DevicePollInterval = time.Second
	const api, reports = "https://api.example.com/", "https://reports.example.com/v1"
	if _, err := h.Srv.Clients.Create(h.Ctx, clients.Client{ID: "tv", Name: "TV app", Public: true,
		GrantTypes: []string{clients.GrantDeviceCode}, Scopes: []string{"openid", "profile"},
		Audience: []string{api, reports}, AccessTokenFormat: clients.AccessTokenJWT,
	}); err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "tv", Scopes: []string{"openid", "profile"}, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: h.Issuer + "/oauth2/device/auth", TokenURL: h.Issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}

	for name, res := range map[string]string{
		"not registered": "https://elsewhere.example.com/",
		"not absolute":   "api",
		"a fragment":     api + "#x",
	} {
		t.Run(name, func(t *testing.T) {
			before := h.Stored(t)
			_, err := conf.DeviceAuth(h.Ctx, oauth2.SetAuthURLParam("resource", res))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_target" {
				t.Fatalf("device authorization for resource %q: %v, want invalid_target", res, err)
			}
			if changed := before.Changed(h.Stored(t)); len(changed) > 0 {
				t.Errorf("a refused device authorization changed %v", changed)
			}
		})
	}

	da, err := conf.DeviceAuth(h.Ctx, oauth2.SetAuthURLParam("resource", api))
	if err != nil {
		t.Fatalf("device authorization for %s: %v", api, err)
	}
	decide(t, servertest.NewBrowser(t), da, "alice@example.com", "approve")
	ctx, cancel := context.WithTimeout(h.Ctx, 30*time.Second)
	defer cancel()
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	if c := verifyAccessToken(t, h, tok.AccessToken, api); len(c.Audience) != 1 || c.Audience[0] != api {
		t.Fatalf("the device's JWT access token has aud %v, want [%s]", c.Audience, api)
	}
}
