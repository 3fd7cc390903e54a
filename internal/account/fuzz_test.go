package account_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// accountForms are the account page's form posts; {id} is the path's
// fuzzed segment.
var accountForms = []string{
	"/account/password",
	"/account/mfa/enroll",
	"/account/mfa/recovery-codes",
	"/account/mfa/disable",
	"/account/sign-out-everywhere",
	"/account/sessions/{id}/sign-out",
	"/account/passkeys/{id}/rename",
	"/account/passkeys/{id}/remove",
	"/account/passkeys/options",
	"/account/passkeys",
}

// accountFixture is a person with a password, an authenticator app and a
// two-factor session: what every input starts from.
type accountFixture struct {
	email, secret, sid, cookie, csrf string
}

// FuzzHandler_Forms posts arbitrary bodies (and path ids) to the account
// page's forms from a signed-in browser ({csrf} is the session's token,
// {password} the account's password, {totp} a current code, {sid} the
// session's id). No 5xx; a refusal (4xx) stores nothing but what the
// throttle counts; a sign-in it sends the browser to stores only that;
// and the password changes, or two-factor authentication goes off, only
// with the right password and the session's token. An input that
// changes the account gets a fresh person for the next; passwords are
// hashed at the least cost (servertest.CheapPasswords).
func FuzzHandler_Forms(f *testing.F) {
	const newPassword = "another horse battery staple"
	for _, seed := range []struct {
		form     uint8
		id, body string
	}{
		{0, "", "csrf_token={csrf}&current_password={password}&new_password=" + url.QueryEscape(newPassword) + "&confirm_password=" + url.QueryEscape(newPassword)},
		{0, "", "csrf_token={csrf}&current_password=wrong&new_password=" + url.QueryEscape(newPassword) + "&confirm_password=" + url.QueryEscape(newPassword)},
		{0, "", "csrf_token={csrf}&current_password={password}&new_password=password&confirm_password=password"},
		{0, "", "csrf_token=forged&current_password={password}&new_password=x&confirm_password=y"},
		{1, "", "csrf_token={csrf}&password={password}&code={totp}"},
		{2, "", "csrf_token={csrf}&code={totp}"},
		{2, "", "csrf_token={csrf}&code=000000"},
		{3, "", "csrf_token={csrf}&password={password}&code={totp}"},
		{3, "", "csrf_token={csrf}&password=wrong&code={totp}"},
		{3, "", "csrf_token={csrf}&password={password}&code=zzzzz-zzzzz"},
		{4, "", "csrf_token={csrf}&confirm=yes"},
		{4, "", "csrf_token={csrf}"},
		{4, "", "confirm=yes"},
		{5, "{sid}", "csrf_token={csrf}"},
		// Found by fuzzing: signing out a session that is not the
		// person's (404) wrote an audit record.
		{5, "00000000-0000-0000-0000-000000000000", "csrf_token={csrf}"},
		{5, "not-a-sid", "csrf_token={csrf}"},
		{6, "1", "csrf_token={csrf}&name=%00"},
		{7, "x", "csrf_token={csrf}&password={password}"},
		{8, "", "csrf_token={csrf}&password={password}"},
		{9, "", "csrf_token={csrf}&credential=%7B%7D&name=key"},
	} {
		f.Add(seed.form, seed.id, seed.body)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	n := 0
	fresh := func(t testing.TB) accountFixture {
		n++
		fx := accountFixture{email: "person" + string(rune('a'+n%26)) + time.Now().Format("150405.000000") + "@example.com"}
		// Not h.CreateUser: its failures go to f, which an input must not use.
		u, err := h.Srv.Users.Create(h.Ctx, users.NewUser{Email: fx.email, Name: "Fuzz", Password: password})
		if err != nil {
			t.Fatal(err)
		}
		en, err := h.Srv.TOTP.Begin(h.Ctx, u.ID, "test", u.Email)
		if err != nil {
			t.Fatal(err)
		}
		// The previous step's code, so that an input's {totp} is not a replay.
		if _, err := h.Srv.TOTP.Confirm(h.Ctx, u.ID, "test", mfa.GenerateCode(en.Secret, time.Now().Add(-30*time.Second))); err != nil {
			t.Fatal(err)
		}
		fx.secret = en.Secret
		fx.sid, fx.cookie = h.Session(t, u.ID, sessions.ACRMFA, sessions.AMRPassword, sessions.AMROTP, sessions.AMRMFA)
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", fx.cookie)
		fx.csrf = h.Srv.Sessions.CSRFToken(r)
		return fx
	}
	fx := fresh(f)
	f.Fuzz(func(t *testing.T, form uint8, id, body string) {
		if _, err := h.DB.Pool.Exec(h.Ctx, `DELETE FROM throttle`); err != nil {
			t.Fatal(err)
		}
		path := strings.ReplaceAll(accountForms[int(form)%len(accountForms)], "{id}", strings.ReplaceAll(id, "{sid}", fx.sid))
		for k, v := range map[string]string{"csrf": fx.csrf, "password": password, "totp": mfa.GenerateCode(fx.secret, time.Now())} {
			body = strings.ReplaceAll(body, "{"+k+"}", url.QueryEscape(v))
		}
		req, err := http.NewRequest("POST", h.URL+path, strings.NewReader(body))
		if err != nil || req.URL.EscapedPath() != path {
			return // not a request a browser could send to this form
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", fx.cookie)
		before := h.Stored(t)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s: status %d:\n%.500s", path, resp.StatusCode, b)
		}
		changed := before.Changed(h.Stored(t), "throttle")
		loc := resp.Header.Get("Location")
		switch {
		case resp.StatusCode >= 400:
			if len(changed) > 0 {
				t.Fatalf("%s: refused with %d, yet %v changed:\n%.300s", path, resp.StatusCode, changed, b)
			}
		case strings.HasPrefix(loc, "/login"):
			if len(changed) > 1 || len(changed) == 1 && changed[0] != "login_flows" {
				t.Fatalf("%s: sent to sign in, yet %v changed", path, changed)
			}
		case len(changed) > 0:
			form, _ := url.ParseQuery(body)
			if form.Get("csrf_token") != fx.csrf {
				t.Fatalf("%s: %v changed with csrf_token %q", path, changed, form.Get("csrf_token"))
			}
			pw := map[string]string{"/account/password": "current_password", "/account/mfa/disable": "password"}[path]
			if pw != "" && norm.NFKC.String(form.Get(pw)) != password {
				t.Fatalf("%s: %v changed with the password %q", path, changed, form.Get(pw))
			}
		}
		if len(changed) > 0 {
			fx = fresh(t) // the next input starts from a person as set up
		}
	})
}
