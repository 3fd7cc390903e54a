package server_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/mail/mailtest"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
)

const mailWait = 10 * time.Second

// withMail starts a real SMTP server that insists on STARTTLS and a
// password, and an instance that mails through it.
func withMail(t *testing.T, mutate ...func(*server.Config)) (*servertest.Harness, *mailtest.Server) {
	t.Helper()
	smtp := mailtest.Start(t, mailtest.Options{Username: "idp", Password: "smtp-secret"})
	h := servertest.New(t, append([]func(*server.Config){func(c *server.Config) {
		c.Mail = smtp.Config("Acme Login <login@example.com>")
		c.Brand.Name = "Acme Login"
	}}, mutate...)...)
	return h, smtp
}

// forgot asks for a reset link from the sign-in page of start (an
// authorization request, or "" for the forgot page alone).
func forgot(t *testing.T, h *servertest.Harness, br *servertest.Browser, start, email string) servertest.Page {
	t.Helper()
	if start != "" {
		p := br.Get(start)
		if !p.IsLoginForm() || !strings.Contains(p.Body, `<a href="/login/forgot" id="forgot-password">Forgot your password?</a>`) {
			t.Fatalf("the sign-in page has no “Forgot your password?” link:\n%s", p.Body)
		}
	}
	p := br.Get(h.Issuer + "/login/forgot")
	servertest.WantPage(t, p, "/login/forgot", http.StatusOK, `type="email" autocomplete="email"`)
	servertest.CheckMarkup(t, p.Body)
	return br.Post(h.Issuer+"/login/forgot", url.Values{"csrf_token": {p.CSRF(t)}, "email": {email}})
}

// followLink opens a mailed link and presses its one button.
func followLink(t *testing.T, br *servertest.Browser, link string) servertest.Page {
	t.Helper()
	p := br.Get(link)
	if p.Status != http.StatusOK {
		return p
	}
	servertest.CheckMarkup(t, p.Body)
	u, _ := url.Parse(link)
	return br.Post(u.Scheme+"://"+u.Host+"/login/reset", url.Values{"csrf_token": {p.CSRF(t)}, "token": {u.Query().Get("token")}})
}

func choosePassword(t *testing.T, h *servertest.Harness, br *servertest.Browser, p servertest.Page, pw string) servertest.Page {
	t.Helper()
	servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "Saving it ends every session")
	servertest.CheckMarkup(t, p.Body)
	return br.Post(h.Issuer+"/login/new-password", url.Values{"csrf_token": {p.CSRF(t)}, "new_password": {pw}, "confirm_password": {pw}})
}

func signsIn(t *testing.T, h *servertest.Harness, email, pw string) bool {
	t.Helper()
	_, err := h.Srv.Users.Authenticate(h.Ctx, email, pw, "")
	return err == nil
}

// TestReset_PasswordOnly: forgot password → mail over STARTTLS → link →
// new password → signed in to the app the sign-in was for; the old
// session in another browser is gone, its app was told over the back
// channel, and the old password no longer works.
func TestReset_PasswordOnly(t *testing.T) {
	h, smtp := withMail(t)
	alice := h.CreateUser("alice@example.com", password)
	appA, appB, recvA, _ := twoApps(h)
	laptop := servertest.NewBrowser(t)
	old := signInTo(t, laptop, appA, recvA, alice.Email)

	phone := servertest.NewBrowser(t)
	a := appB.AuthURL()
	p := forgot(t, h, phone, a.URL, "ALICE@example.com")
	servertest.WantPage(t, p, "/login/forgot", http.StatusOK, "a link to choose a new password is on its way")

	m := smtp.Wait(alice.Email, 1, mailWait)
	if !m.TLS || m.From != "login@example.com" || !strings.Contains(m.Header.Get("Subject"), "Acme Login") {
		t.Errorf("mail: TLS %v, from %q, subject %q", m.TLS, m.From, m.Header.Get("Subject"))
	}
	link := m.Link(t)
	if !strings.HasPrefix(link, h.Issuer+"/login/reset?token=") {
		t.Fatalf("link %q does not start with the issuer", link)
	}
	token, _ := url.Parse(link)
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, token.Query().Get("token")); n != 1 {
		t.Fatalf("%d rows hold the token's hash, want 1", n)
	}
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets WHERE position(convert_to($1, 'UTF8') in token_hash) > 0`, token.Query().Get("token")); n != 0 {
		t.Fatal("the token is stored in the clear")
	}

	p = followLink(t, phone, link)
	if liveSessions(t, h, alice) != 1 {
		t.Fatal("the link alone made a session")
	}
	const mine = "a fresh one from the mail"
	p = choosePassword(t, h, phone, p, mine)
	// The sign-in this browser began continues: App B gets its code.
	_, _, claims := appB.Exchange(t, appB.Code(t, p, a), a)
	if claims["sub"] != alice.ID {
		t.Errorf("sub = %v", claims["sub"])
	}
	if liveSessions(t, h, alice) != 1 {
		t.Errorf("%d live sessions, want the phone's only", liveSessions(t, h, alice))
	}
	if s, err := h.Srv.Sessions.Get(h.Ctx, old.sid); err != nil || s.RevokedReason != sessions.ReasonFactorsChanged {
		t.Errorf("laptop session %+v (%v): want revoked", s, err)
	}
	old.assertDead(t)
	if got := recvA.WaitFor(t, 1); got[0].SID != old.sid {
		t.Errorf("App A was told about sid %q, want %q", got[0].SID, old.sid)
	}
	if signsIn(t, h, alice.Email, password) || !signsIn(t, h, alice.Email, mine) {
		t.Error("the password did not change")
	}
	if n := h.OwnChanges(alice.ID, audit.ActionResetPassword); n != 1 {
		t.Errorf("the reset is in the audit log %d times, want once", n)
	}

	t.Run("the used link is refused", func(t *testing.T) {
		p := servertest.NewBrowser(t).Get(link)
		servertest.WantPage(t, p, "/login/reset", http.StatusGone, "already used")
		p = followLinkPost(t, h, link)
		servertest.WantPage(t, p, "/login/reset", http.StatusGone, "already used")
		if !signsIn(t, h, alice.Email, mine) {
			t.Error("the refusal changed the password")
		}
	})
}

// followLinkPost posts a link's token from a fresh browser whose flow is
// valid, as if its page had been opened while the link still worked.
func followLinkPost(t *testing.T, h *servertest.Harness, link string) servertest.Page {
	t.Helper()
	br := servertest.NewBrowser(t)
	p := br.Get(h.Issuer + "/login/forgot") // any page that begins a flow
	u, _ := url.Parse(link)
	return br.Post(h.Issuer+"/login/reset", url.Values{"csrf_token": {p.CSRF(t)}, "token": {u.Query().Get("token")}})
}

// TestReset_TOTP: a mailed link alone does not take over a two-factor
// account: the code comes before the new password form, a wrong one
// changes nothing, and the session is a two-factor one.
func TestReset_TOTP(t *testing.T) {
	h, smtp := withMail(t)
	bob := h.CreateUser("bob@example.com", password)
	app, _, recv, _ := twoApps(h)
	signInTo(t, servertest.NewBrowser(t), app, recv, bob.Email) // a session from before 2FA
	phoneApp := h.EnrollTOTP(bob)

	br := servertest.NewBrowser(t)
	forgot(t, h, br, "", bob.Email)
	link := smtp.Wait(bob.Email, 1, mailWait).Link(t)
	first := br.Get(link)
	servertest.WantPage(t, first, "/login/reset", http.StatusOK, "confirm with your second factor")
	p := followLink(t, br, link)
	servertest.WantPage(t, p, "/login/totp", http.StatusOK, `autocomplete="one-time-code"`)

	t.Run("no new password before the code", func(t *testing.T) {
		p := br.Get(h.Issuer + "/login/new-password")
		servertest.WantPage(t, p, "/login/totp", http.StatusOK, "")
		p = br.Post(h.Issuer+"/login/new-password", url.Values{"csrf_token": {p.CSRF(t)}, "new_password": {"taken over by mail"},
			"confirm_password": {"taken over by mail"}})
		if signsIn(t, h, bob.Email, "taken over by mail") || !signsIn(t, h, bob.Email, password) {
			t.Fatal("the password changed without the second factor")
		}
	})
	t.Run("a wrong code changes nothing", func(t *testing.T) {
		p := br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {"000000"}})
		servertest.WantPage(t, p, "/login/totp", http.StatusUnauthorized, "")
		if liveSessions(t, h, bob) != 1 || !signsIn(t, h, bob.Email, password) {
			t.Fatal("a wrong code changed something")
		}
	})

	p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {phoneApp.Code()}})
	const mine = "bob remembers this one"
	p = choosePassword(t, h, br, p, mine)
	servertest.WantPage(t, p, "/account", http.StatusOK, "")
	s, err := h.Srv.Sessions.Current(h.Ctx, cookieRequest(t, br, h))
	if err != nil {
		t.Fatal(err)
	}
	if s.ACR != sessions.ACRMFA || !slices.Contains(s.AMR, "otp") {
		t.Errorf("session acr %s amr %v, want two factors", s.ACR, s.AMR)
	}
	if liveSessions(t, h, bob) != 1 {
		t.Errorf("%d live sessions, want the new one only", liveSessions(t, h, bob))
	}
	recv.WaitFor(t, 1)
	if !signsIn(t, h, bob.Email, mine) {
		t.Error("the new password does not work")
	}
}

// cookieRequest is a request carrying br's cookies for the issuer.
func cookieRequest(t *testing.T, br *servertest.Browser, h *servertest.Harness) *http.Request {
	t.Helper()
	r, _ := http.NewRequest("GET", h.Issuer+"/account", nil)
	u, _ := url.Parse(h.Issuer)
	for _, c := range br.Client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	return r
}

var emailInPage = regexp.MustCompile(`[a-z0-9.]+@example\.com`)

// TestReset_UnknownAddress: the answer for an address without an account
// is the page a known one gets, no mail is sent, and the times differ by
// less than the noise.
func TestReset_UnknownAddress(t *testing.T) {
	h, smtp := withMail(t)
	h.CreateUser("known@example.com", password)
	disabled := h.CreateUser("gone@example.com", password)
	if err := h.Srv.Users.SetDisabled(h.Ctx, disabled.ID, true); err != nil {
		t.Fatal(err)
	}
	br := servertest.NewBrowser(t)
	known := forgot(t, h, br, "", "known@example.com")
	unknown := forgot(t, h, br, "", "nobody@example.com")
	off := forgot(t, h, br, "", "gone@example.com")
	norm := func(p servertest.Page) string {
		return emailInPage.ReplaceAllString(p.Body, "ADDRESS")
	}
	if known.Status != unknown.Status || norm(known) != norm(unknown) || norm(off) != norm(known) {
		t.Fatalf("the answers differ:\nknown %d:\n%s\nunknown %d:\n%s", known.Status, known.Body, unknown.Status, unknown.Body)
	}
	// Once every request is processed, the outbox says what will ever
	// be sent.
	rows := waitMailDelivered(t, h)
	if len(rows) != 1 || !strings.Contains(rows[0].Payload, `"known@example.com"`) {
		t.Fatalf("queued mail %+v: want the known address's only", rows)
	}
	if n := len(smtp.To("nobody@example.com")) + len(smtp.To("gone@example.com")); n != 0 {
		t.Fatalf("%d mails to addresses without an (enabled) account", n)
	}
	if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets`); n != 1 {
		t.Fatalf("%d reset rows, want the known account's only", n)
	}

	t.Run("similar time", func(t *testing.T) {
		// Alternating, each address its own (the throttle allows three an
		// hour), so neither side gets a warmer cache.
		var tk, tu []time.Duration
		for i := range 8 {
			for _, who := range []string{"k", "u"} {
				email := who + string(rune('a'+i)) + "@example.com"
				if who == "k" {
					h.CreateUser(email, password)
				}
				b := servertest.NewBrowser(t)
				p := b.Get(h.Issuer + "/login/forgot")
				start := time.Now()
				b.Post(h.Issuer+"/login/forgot", url.Values{"csrf_token": {p.CSRF(t)}, "email": {email}})
				d := time.Since(start)
				if who == "k" {
					tk = append(tk, d)
				} else {
					tu = append(tu, d)
				}
			}
		}
		mk, mu := median(tk), median(tu)
		noise := max(spread(tk), spread(tu), 5*time.Millisecond)
		if diff := (mk - mu).Abs(); diff > 2*noise {
			t.Errorf("median %s for known addresses, %s for unknown: they differ by %s, the noise is %s", mk, mu, diff, noise)
		}
		t.Logf("median known %s, unknown %s, noise %s", mk, mu, noise)
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// spread is the interquartile range.
func spread(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[3*len(s)/4] - s[len(s)/4]
}

// TestReset_BadLinks: an expired, a tampered and a stale link (the
// password changed after it was mailed) each get a clear page and change
// nothing.
func TestReset_BadLinks(t *testing.T) {
	h, smtp := withMail(t)
	carol := h.CreateUser("carol@example.com", password)
	mailed := func(n int) string {
		forgot(t, h, servertest.NewBrowser(t), "", carol.Email)
		return smtp.Wait(carol.Email, n, mailWait).Link(t)
	}
	cases := []struct {
		name   string
		link   func() string
		status int
		want   string
	}{
		{"expired", func() string {
			l := mailed(1)
			dbtest.Exec(t, h.DB.Pool, `UPDATE password_resets SET expires_at = now() - interval '1 second'`)
			return l
		}, http.StatusGone, "has expired"},
		{"tampered", func() string {
			l := mailed(2)
			return l[:len(l)-2] + "xy"
		}, http.StatusBadRequest, "not valid"},
		{"stale after a password change", func() string {
			l := mailed(3)
			if err := h.Srv.Users.SetPassword(h.Ctx, carol.ID, "changed by carol herself", false); err != nil {
				t.Fatal(err)
			}
			return l
		}, http.StatusGone, "the password changed after it was sent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			link := c.link()
			hashBefore := dbtest.Value[string](t, h.DB.Pool, `SELECT hash FROM password_credentials WHERE user_id = $1`, carol.ID)
			p := servertest.NewBrowser(t).Get(link)
			servertest.WantPage(t, p, "/login/reset", c.status, c.want)
			p = followLinkPost(t, h, link)
			servertest.WantPage(t, p, "/login/reset", c.status, c.want)
			if dbtest.Value[string](t, h.DB.Pool, `SELECT hash FROM password_credentials WHERE user_id = $1`, carol.ID) != hashBefore {
				t.Error("a refused link changed the password")
			}
			if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets WHERE used_at IS NOT NULL`); n != 0 {
				t.Errorf("a refused link was marked used (%d)", n)
			}
		})
	}
	t.Run("not an address", func(t *testing.T) {
		before := len(requestRows(t, h))
		p := forgot(t, h, servertest.NewBrowser(t), "", "carol at example.com")
		servertest.WantPage(t, p, "/login/forgot", http.StatusBadRequest, "That is not an email address")
		if len(requestRows(t, h)) != before {
			t.Error("a request was queued")
		}
	})
	t.Run("no CSRF token", func(t *testing.T) {
		erin := h.CreateUser("erin@example.com", password)
		forgot(t, h, servertest.NewBrowser(t), "", erin.Email)
		link := smtp.Wait(erin.Email, 1, mailWait).Link(t)
		u, _ := url.Parse(link)
		p := servertest.NewBrowser(t).Post(h.Issuer+"/login/reset", url.Values{"token": {u.Query().Get("token")}})
		if p.Status == http.StatusOK || p.Status == http.StatusSeeOther {
			t.Fatalf("accepted without a CSRF token: %d", p.Status)
		}
		if n := dbtest.Value[int](t, h.DB.Pool, `SELECT count(*) FROM password_resets WHERE used_at IS NOT NULL`); n != 0 {
			t.Error("the link was used")
		}
	})
}

// TestReset_Throttle: three links an hour per address, then a wait, said
// on the page (the same for an unknown address), with no fourth mail;
// and a bound per client address.
func TestReset_Throttle(t *testing.T) {
	h, smtp := withMail(t)
	dan := h.CreateUser("dan@example.com", password)
	br := servertest.NewBrowser(t)
	for i := range 3 {
		p := forgot(t, h, br, "", dan.Email)
		servertest.WantPage(t, p, "/login/forgot", http.StatusOK, "on its way")
		smtp.Wait(dan.Email, i+1, mailWait)
	}
	for _, email := range []string{dan.Email, "nobody@example.com"} {
		if email != dan.Email {
			for range 3 {
				forgot(t, h, br, "", email)
			}
		}
		p := forgot(t, h, br, "", email)
		servertest.WantPage(t, p, "/login/forgot", http.StatusTooManyRequests, "Too many reset links")
		if p.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	}
	if rows := waitMailDelivered(t, h); len(rows) != 3 {
		t.Errorf("%d mails, want 3", len(rows))
	}

	t.Run("per client address", func(t *testing.T) {
		// Six links so far from this address (refusals do not count);
		// twenty are allowed.
		for i := range 14 {
			p := forgot(t, h, br, "", "other"+string(rune('a'+i))+"@example.com")
			servertest.WantPage(t, p, "/login/forgot", http.StatusOK, "on its way")
		}
		p := forgot(t, h, br, "", "one-too-many@example.com")
		servertest.WantPage(t, p, "/login/forgot", http.StatusTooManyRequests, "Too many reset links")
	})
}

// TestReset_MailOff: without SMTP the sign-in page offers no reset link,
// and the reset pages say to ask an administrator.
func TestReset_MailOff(t *testing.T) {
	h := servertest.New(t)
	app := h.NewRP("app")
	br := servertest.NewBrowser(t)
	p := br.Get(app.AuthURL().URL)
	if strings.Contains(p.Body, "/login/forgot") || !strings.Contains(p.Body, "Ask an administrator") {
		t.Errorf("the sign-in page without mail:\n%s", p.Body)
	}
	servertest.WantPage(t, br.Get(h.Issuer+"/login/forgot"), "/login/forgot", http.StatusOK, "Ask an administrator")
	servertest.WantPage(t, br.Get(h.Issuer+"/login/reset?token=x"), "/login/reset", http.StatusNotFound, "off here")
}

// TestReset_RecoveryCode: a person who lost both their password and their
// phone gets in with the mail and a recovery code, as at sign-in.
func TestReset_RecoveryCode(t *testing.T) {
	h, smtp := withMail(t)
	fay := h.CreateUser("fay@example.com", password)
	e, err := h.Srv.TOTP.Begin(h.Ctx, fay.ID, "test", fay.Email)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := h.Srv.TOTP.Confirm(h.Ctx, fay.ID, "test", mfa.GenerateCode(e.Secret, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	br := servertest.NewBrowser(t)
	forgot(t, h, br, "", fay.Email)
	p := followLink(t, br, smtp.Wait(fay.Email, 1, mailWait).Link(t))
	servertest.WantPage(t, p, "/login/totp", http.StatusOK, "")
	p = br.Post(h.Issuer+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {codes[0]}})
	p = choosePassword(t, h, br, p, "fay starts over")
	servertest.WantPage(t, p, "/account", http.StatusOK, "")
	if !signsIn(t, h, fay.Email, "fay starts over") {
		t.Error("the new password does not work")
	}
}
