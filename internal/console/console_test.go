package console_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/servertest"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/sessions/sessionstest"
	"github.com/idp/idp/internal/users"
)

func TestConsole_Access(t *testing.T) {
	e := newEnv(t)

	t.Run("a visitor is sent to sign in", func(t *testing.T) {
		p := servertest.NewBrowser(t).Get(e.URL + "/admin")
		if !p.IsLoginForm() {
			t.Fatalf("GET /admin without a session ended at %s (%d), want the sign-in form:\n%s", p.URL, p.Status, p.Body)
		}
	})

	t.Run("an administrator with two factors reaches the console", func(t *testing.T) {
		b, _ := e.adminBrowser(t, "ada@example.com")
		p := b.Get(e.URL + "/admin")
		servertest.WantPage(t, p, "/admin", http.StatusOK, "Newest users")
		servertest.CheckMarkup(t, p.Body)
	})

	t.Run("someone who is not an administrator gets 403 and changes nothing", func(t *testing.T) {
		target := e.createUser(t, "target@example.com", false)
		tb := servertest.NewBrowser(t)
		tb.SignIn(e.URL+"/account", target.Email, password)
		u := e.createUser(t, "mallory@example.com", false)
		b := servertest.NewBrowser(t)
		e.signIn(t, b, e.URL+"/admin", u, "")
		p := b.Get(e.URL + "/admin")
		servertest.WantPage(t, p, "/admin", http.StatusForbidden, "This page is for administrators.")
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type %q, want an HTML page", ct)
		}
		servertest.WantPage(t, b.Get(e.URL+"/admin/users/"+target.ID), "/admin/users/"+target.ID, http.StatusForbidden, "for administrators")
		// A valid CSRF token of their own session does not make them one.
		token := b.Get(e.URL + "/account").CSRF(t)
		resp := postToken(t, b, e.URL+"/admin/users/"+target.ID+"/revoke-sessions", token)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a non-administrator's revoke answered %d, want 403", resp.StatusCode)
		}
		list, err := e.Srv.Sessions.ListByUser(e.Ctx, target.ID)
		if err != nil || len(list) != 1 {
			t.Errorf("the target has %d live sessions (%v) after a non-administrator's revoke, want 1", len(list), err)
		}
	})

	t.Run("an administrator without 2FA sets it up first", func(t *testing.T) {
		adm := e.createUser(t, "grace@example.com", true)
		b := servertest.NewBrowser(t)
		e.signIn(t, b, e.URL+"/admin", adm, "") // a password-only session
		p := b.Get(e.URL + "/admin")
		// The password again first: the session may be a stolen cookie; the
		// page says what the second factor is for.
		servertest.WantPage(t, p, "/login", http.StatusOK, "Confirm it’s you")
		if !strings.Contains(p.Body, "A second factor is needed to continue to <strong>the admin console</strong>") {
			t.Errorf("the step-up page does not say why it asks:\n%s", p.Body)
		}
		p = b.Post(e.URL+"/login", url.Values{"csrf_token": {p.CSRF(t)}, "password": {password}})
		servertest.WantPage(t, p, "/login/enroll", http.StatusOK, "Set up two-factor authentication")
		m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(p.Body)
		if m == nil {
			t.Fatalf("no secret on the enrollment page:\n%s", p.Body)
		}
		p = b.Post(e.URL+"/login/enroll", url.Values{"csrf_token": {p.CSRF(t)}, "code": {e.code(adm, m[1])}})
		servertest.WantPage(t, p, "/login/enroll", http.StatusOK, "recovery codes")
		servertest.WantPage(t, b.Get(e.URL+"/admin"), "/admin", http.StatusOK, "Find a user by email")
	})

	t.Run("an administrator whose session has one factor gives a second", func(t *testing.T) {
		adm := e.createUser(t, "hopper@example.com", true)
		b := servertest.NewBrowser(t)
		e.signIn(t, b, e.URL+"/account", adm, "") // before 2FA: password only
		secret := e.enroll(t, adm)
		before, err := e.Srv.Sessions.ListByUser(e.Ctx, adm.ID)
		if err != nil || len(before) != 1 || before[0].MultiFactor() {
			t.Fatalf("want one password-only session, have %+v (%v)", before, err)
		}
		// A form post is not carried out before the step-up.
		token := b.Get(e.URL + "/account").CSRF(t)
		if resp := postToken(t, b, e.URL+"/admin/users/"+adm.ID+"/revoke-sessions", token); resp.StatusCode != http.StatusSeeOther ||
			!strings.HasPrefix(resp.Header.Get("Location"), "/login/totp") {
			t.Fatalf("a post from a one-factor session answered %d to %q, want 303 to the code form", resp.StatusCode, resp.Header.Get("Location"))
		}
		p := b.Get(e.URL + "/admin")
		servertest.WantPage(t, p, "/login/totp", http.StatusOK, "Two-factor authentication")
		b.Post(e.URL+"/login/totp", url.Values{"csrf_token": {p.CSRF(t)}, "code": {e.code(adm, secret)}})
		servertest.WantPage(t, b.Get(e.URL+"/admin"), "/admin", http.StatusOK, "Find a user by email")
		after, err := e.Srv.Sessions.ListByUser(e.Ctx, adm.ID)
		if err != nil || len(after) != 1 || after[0].ID != before[0].ID || !after[0].MultiFactor() {
			t.Fatalf("after the step-up: %+v (%v); want the same session, now with two factors", after, err)
		}
	})
}

func TestConsole_FindUsers(t *testing.T) {
	e := newEnv(t)
	b, _ := e.adminBrowser(t, "ada@example.com")
	grace := e.createUser(t, "Grace@example.com", false)
	e.createUser(t, "hopper@example.org", false)

	t.Run("an exact email opens the user, whatever its case", func(t *testing.T) {
		p := b.Get(e.URL + "/admin?email=" + url.QueryEscape(" grace@EXAMPLE.com "))
		servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, `<h1 id="user-email">Grace@example.com</h1>`)
		servertest.CheckMarkup(t, p.Body)
	})
	t.Run("the front page lists the newest users first", func(t *testing.T) {
		p := b.Get(e.URL + "/admin")
		servertest.WantPage(t, p, "/admin", http.StatusOK, "Newest users")
		h, g, a := strings.Index(p.Body, "hopper@example.org"), strings.Index(p.Body, "Grace@example.com"), strings.Index(p.Body, "ada@example.com")
		if h < 0 || g < 0 || a < 0 || !(h < g && g < a) {
			t.Errorf("users at %d (hopper), %d (grace), %d (ada): want all listed, newest first", h, g, a)
		}
	})
	t.Run("an unknown email is a 404 listing near matches", func(t *testing.T) {
		p := b.Get(e.URL + "/admin?email=example.org")
		servertest.WantPage(t, p, "/admin", http.StatusNotFound, "No user has the email address example.org.")
		if !strings.Contains(p.Body, "hopper@example.org") || strings.Contains(p.Body, "Grace@example.com") {
			t.Errorf("the near matches for example.org are wrong:\n%s", p.Body)
		}
	})
	t.Run("wildcards are searched for literally", func(t *testing.T) {
		p := b.Get(e.URL + "/admin?email=" + url.QueryEscape("%"))
		servertest.WantPage(t, p, "/admin", http.StatusNotFound, "No users to show.")
	})
	t.Run("a search longer than any email is refused", func(t *testing.T) {
		p := b.Get(e.URL + "/admin?email=" + strings.Repeat("a", 300))
		servertest.WantPage(t, p, "/admin", http.StatusBadRequest, "longer than any email address")
	})
	t.Run("an unknown or malformed user id is a 404 page", func(t *testing.T) {
		for _, id := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid"} {
			servertest.WantPage(t, b.Get(e.URL+"/admin/users/"+id), "/admin/users/"+id, http.StatusNotFound, "There is no user with that id.")
		}
		servertest.WantPage(t, b.Get(e.URL+"/admin/nothing-here"), "/admin/nothing-here", http.StatusNotFound, "no such page")
	})
}

// TestConsole_RevokeAll revokes a user's sessions in two browsers from the
// console and follows the notifications to delivered.
func TestConsole_RevokeAll(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	appA, appB := e.newApp(t, "app-a"), e.newApp(t, "app-b")
	grace := e.createUser(t, "grace@example.com", false)
	laptop, phone := servertest.NewBrowser(t), servertest.NewBrowser(t)
	sid1 := e.signInTo(t, laptop, appA, grace)
	if e.signInTo(t, laptop, appB, grace) != sid1 {
		t.Fatal("the laptop's second app is in another session")
	}
	sid2 := e.signInTo(t, phone, appA, grace)
	userPage := e.URL + "/admin/users/" + grace.ID

	p := b.Get(userPage)
	servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, "2 live.")
	for _, sid := range []string{sid1, sid2} {
		if !strings.Contains(p.Body, `id="session-`+sid+`"`) {
			t.Errorf("the user page does not list session %s", sid)
		}
	}
	servertest.CheckMarkup(t, p.Body)

	t.Run("without the CSRF token nothing changes", func(t *testing.T) {
		resp := postToken(t, b, userPage+"/revoke-sessions", "")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a post without a token answered %d, want 403", resp.StatusCode)
		}
		if e.revokedReason(t, sid1) != "" || e.revokedReason(t, sid2) != "" {
			t.Fatal("a post without a CSRF token ended a session")
		}
	})

	resp := post(t, b, p, "/admin/users/"+grace.ID+"/revoke-sessions")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther ||
		loc != "/admin/users/"+grace.ID+"?notice=revoked&notifications=3&sessions=2" {
		t.Fatalf("revoke answered %d to %q, want 303 back to the user with the counts", resp.StatusCode, loc)
	}
	for _, sid := range []string{sid1, sid2} {
		if got := e.revokedReason(t, sid); got != sessions.ReasonAdminRevoke {
			t.Errorf("session %s ended with reason %q, want %s", sid, got, sessions.ReasonAdminRevoke)
		}
	}
	if n := e.audited(t, "admin:"+adm.ID, "sessions.revoke", grace.ID); n != 1 {
		t.Errorf("%d audit records of the revoke by admin:%s, want 1", n, adm.ID)
	}
	p = b.Get(userPage + "?notice=revoked&notifications=3&sessions=2")
	servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, "All sessions and tokens revoked: ended 2 sessions; 3 apps to be told")

	// The console follows each notification to delivered.
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(p.Body, `data-state="delivered"`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the revoke the user page shows %d delivered notifications, want 3:\n%s",
				strings.Count(p.Body, `data-state="delivered"`), p.Body)
		}
		time.Sleep(50 * time.Millisecond)
		p = b.Get(userPage)
	}
	if appA.acceptedCount() != 2 || appB.acceptedCount() != 1 {
		t.Errorf("apps accepted %d (A) and %d (B) notifications, want 2 and 1", appA.acceptedCount(), appB.acceptedCount())
	}
	if strings.Contains(p.Body, "Retry now") {
		t.Error("a delivered notification offers a retry")
	}

	t.Run("revoking again ends nothing", func(t *testing.T) {
		resp := post(t, b, p, "/admin/users/"+grace.ID+"/revoke-sessions")
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notifications=0&sessions=0") {
			t.Errorf("a second revoke redirected to %q, want zero counts", loc)
		}
	})
}

func TestConsole_AccountActions(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	grace := e.createUser(t, "grace@example.com", false)
	gb := servertest.NewBrowser(t)
	e.signIn(t, gb, e.URL+"/account", grace, "")
	e.enroll(t, grace)
	userPage := e.URL + "/admin/users/" + grace.ID
	live := func() int {
		list, err := e.Srv.Sessions.ListByUser(e.Ctx, grace.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}

	t.Run("reset 2FA", func(t *testing.T) {
		p := b.Get(userPage)
		servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, `id="reset-mfa"`)
		resp := post(t, b, p, "/admin/users/"+grace.ID+"/reset-mfa")
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=mfa-reset") {
			t.Fatalf("reset answered %d to %q", resp.StatusCode, loc)
		}
		if on, err := e.Srv.TOTP.Enabled(e.Ctx, grace.ID); err != nil || on {
			t.Fatalf("after the reset 2FA is on=%v (%v), want off", on, err)
		}
		if n := live(); n != 0 {
			t.Errorf("%d live sessions after the reset, want 0", n)
		}
		if n := e.audited(t, "admin:"+adm.ID, "users.reset_mfa", grace.ID); n != 1 {
			t.Errorf("%d audit records of the reset, want 1", n)
		}
		// The user signs in with the password alone.
		p = servertest.NewBrowser(t).SignIn(e.URL+"/account", grace.Email, password)
		servertest.WantPage(t, p, "/account", http.StatusOK, "Your account")

		// A stale page's second reset finds nothing to reset and says so.
		p = b.Get(userPage)
		if strings.Contains(p.Body, `id="reset-mfa"`) {
			t.Error("the page offers to reset 2FA that is off")
		}
		resp = postToken(t, b, userPage+"/reset-mfa", p.CSRF(t))
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("resetting 2FA that is off answered %d, want 409", resp.StatusCode)
		}
	})

	t.Run("disable, then enable", func(t *testing.T) {
		e.signIn(t, gb, e.URL+"/account", grace, "")
		n := live()
		p := b.Get(userPage)
		resp := post(t, b, p, "/admin/users/"+grace.ID+"/disable")
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=disabled") ||
			!strings.Contains(loc, fmt.Sprintf("sessions=%d", n)) {
			t.Fatalf("disable answered %d to %q", resp.StatusCode, loc)
		}
		u, err := e.Srv.Users.ByID(e.Ctx, grace.ID)
		if err != nil || !u.Disabled() || live() != 0 {
			t.Fatalf("after disable: disabled=%v, %d live sessions (%v)", u.Disabled(), live(), err)
		}
		p = b.Get(userPage + "?notice=disabled&sessions=1")
		servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, "Account disabled: ended 1 session;")
		if strings.Contains(p.Body, `id="disable"`) {
			t.Error("a disabled account's page offers Disable")
		}
		p = servertest.NewBrowser(t).SignIn(e.URL+"/account", grace.Email, password)
		servertest.WantPage(t, p, "/login", http.StatusForbidden, "This account is disabled.")

		resp = post(t, b, b.Get(userPage), "/admin/users/"+grace.ID+"/enable")
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=enabled") {
			t.Fatalf("enable answered %d to %q", resp.StatusCode, loc)
		}
		p = servertest.NewBrowser(t).SignIn(e.URL+"/account", grace.Email, password)
		servertest.WantPage(t, p, "/account", http.StatusOK, "Your account")
		if e.audited(t, "admin:"+adm.ID, "users.disable", grace.ID) != 1 || e.audited(t, "admin:"+adm.ID, "users.enable", grace.ID) != 1 {
			t.Error("disable and enable are not each audited once with the administrator as actor")
		}
	})

	t.Run("an administrator cannot disable their own account", func(t *testing.T) {
		p := b.Get(e.URL + "/admin/users/" + adm.ID)
		if strings.Contains(p.Body, `id="disable"`) {
			t.Error("the administrator's own page offers Disable")
		}
		resp := postToken(t, b, e.URL+"/admin/users/"+adm.ID+"/disable", p.CSRF(t))
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("disabling oneself answered %d, want 409", resp.StatusCode)
		}
		if u, err := e.Srv.Users.ByID(e.Ctx, adm.ID); err != nil || u.Disabled() {
			t.Errorf("the administrator is disabled=%v (%v) after a refused self-disable", u.Disabled(), err)
		}
	})

	t.Run("recent activity", func(t *testing.T) {
		p := b.Get(userPage)
		var got []string
		for _, m := range regexp.MustCompile(`data-action="([^"]+)"`).FindAllStringSubmatch(p.Body, -1) {
			got = append(got, m[1])
		}
		// Newest first: each action's own entry follows the sessions it
		// ended, written first in the same transaction.
		want := []string{"users.enable", "users.disable", "sessions.revoke", "users.reset_mfa", "sessions.revoke"}
		if len(got) < len(want) || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
			t.Fatalf("activity %v, want it to start with %v", got, want)
		}
		for _, text := range []string{"Account enabled", "Account disabled", "sessions: account disabled",
			"Two-factor authentication reset", "<td data-label=\"By\">you</td>"} {
			if !strings.Contains(p.Body, text) {
				t.Errorf("grace's page lacks %q", text)
			}
		}
		// The administrator's own page lists what they did, to whom.
		p = b.Get(e.URL + "/admin/users/" + adm.ID)
		if !strings.Contains(p.Body, "Account disabled ("+grace.ID+")") {
			t.Errorf("the administrator's page does not show disabling grace")
		}
		quiet := e.createUser(t, "quiet@example.com", false)
		servertest.WantPage(t, b.Get(e.URL+"/admin/users/"+quiet.ID), "/admin/users/"+quiet.ID, http.StatusOK, `id="no-activity"`)
	})

	t.Run("an unknown user changes nothing", func(t *testing.T) {
		token := b.Get(e.URL + "/admin/users/" + adm.ID).CSRF(t)
		for _, action := range []string{"revoke-sessions", "reset-mfa", "disable", "enable"} {
			for _, id := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid"} {
				if resp := postToken(t, b, e.URL+"/admin/users/"+id+"/"+action, token); resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s of user %q answered %d, want 404", action, id, resp.StatusCode)
				}
			}
		}
	})
}

// TestConsole_RetryNotification: a notification the app refused shows as
// failed with its error, and "Retry now" sends it again.
func TestConsole_RetryNotification(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	app := e.newApp(t, "app-a")
	app.Refuse(true)
	grace := e.createUser(t, "grace@example.com", false)
	hopper := e.createUser(t, "hopper@example.com", false)
	e.signInTo(t, servertest.NewBrowser(t), app, grace)
	userPage := e.URL + "/admin/users/" + grace.ID
	post(t, b, b.Get(userPage), "/admin/users/"+grace.ID+"/revoke-sessions")

	p := waitFor(t, b, userPage, `data-state="failed"`)
	if !strings.Contains(p.Body, "HTTP 400") || !strings.Contains(p.Body, "Retry now") {
		t.Fatalf("the failed notification shows no error or no retry:\n%s", p.Body)
	}
	nid := regexp.MustCompile(`id="notification-(\d+)"`).FindStringSubmatch(p.Body)[1]
	retry := "/admin/users/" + grace.ID + "/notifications/" + nid + "/retry"

	t.Run("through another user's page it is not found", func(t *testing.T) {
		resp := postToken(t, b, e.URL+"/admin/users/"+hopper.ID+"/notifications/"+nid+"/retry", p.CSRF(t))
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("retry through another user answered %d, want 404", resp.StatusCode)
		}
		if resp := postToken(t, b, e.URL+"/admin/users/"+grace.ID+"/notifications/x1/retry", p.CSRF(t)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("retry of a malformed id answered %d, want 404", resp.StatusCode)
		}
		if q := b.Get(userPage); !strings.Contains(q.Body, `data-state="failed"`) {
			t.Error("a refused retry changed the notification")
		}
	})

	app.Refuse(false)
	resp := post(t, b, p, retry)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=retry") {
		t.Fatalf("retry answered %d to %q", resp.StatusCode, loc)
	}
	waitFor(t, b, userPage, `data-state="delivered"`)
	if app.acceptedCount() != 1 {
		t.Errorf("the app accepted %d notifications, want 1", app.acceptedCount())
	}
	if n := e.audited(t, "admin:"+adm.ID, "outbox.retry", "outbox:"+nid); n != 1 {
		t.Errorf("%d audit records of the retry, want 1", n)
	}
	t.Run("a delivered notification is not retried", func(t *testing.T) {
		if resp := postToken(t, b, e.URL+retry, p.CSRF(t)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("retry of a delivered notification answered %d, want 404", resp.StatusCode)
		}
	})
}

// waitFor reloads u until its body contains want (bounded).
func waitFor(t *testing.T, b *servertest.Browser, u, want string) servertest.Page {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := b.Get(u)
		if strings.Contains(p.Body, want) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not show %q after 15 s:\n%s", u, want, p.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsole_SetTemporaryPassword: for a forgotten password an
// administrator sets a temporary one; the user is signed out everywhere
// and must choose their own at the next sign-in. A password the policy
// refuses changes nothing.
func TestConsole_SetTemporaryPassword(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	grace := e.createUser(t, "grace@example.com", false)
	e.signIn(t, servertest.NewBrowser(t), e.URL+"/account", grace, "")
	userPage := e.URL + "/admin/users/" + grace.ID
	const temporary = "temporary for grace"
	submit := func(form url.Values) *http.Response {
		t.Helper()
		c := *b.Client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.PostForm(userPage+"/password", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		if same, err := e.Srv.Users.SameAsCurrent(e.Ctx, grace.ID, password); err != nil || !same {
			t.Fatalf("the password changed (%v)", err)
		}
		if list, err := e.Srv.Sessions.ListByUser(e.Ctx, grace.ID); err != nil || len(list) != 1 {
			t.Fatalf("%d live sessions (%v), want 1", len(list), err)
		}
	}

	p := b.Get(userPage)
	servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, `id="set-password"`)
	csrf := p.CSRF(t)
	t.Run("no CSRF token", func(t *testing.T) {
		if resp := submit(url.Values{"new_password": {temporary}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("answered %d, want 403", resp.StatusCode)
		}
		unchanged(t)
	})
	t.Run("a common password", func(t *testing.T) {
		resp := submit(url.Values{"csrf_token": {csrf}, "new_password": {"Password1"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("answered %d, want 400", resp.StatusCode)
		}
		p := b.Post(userPage+"/password", url.Values{"csrf_token": {csrf}, "new_password": {"Password1"}})
		servertest.WantPage(t, p, "/admin/users/"+grace.ID+"/password", http.StatusBadRequest,
			"The temporary password is one of the most common passwords")
		unchanged(t)
	})
	t.Run("set", func(t *testing.T) {
		resp := submit(url.Values{"csrf_token": {csrf}, "new_password": {temporary}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther ||
			!strings.Contains(loc, "notice=password-set") || !strings.Contains(loc, "sessions=1") {
			t.Fatalf("answered %d to %q", resp.StatusCode, loc)
		}
		if list, err := e.Srv.Sessions.ListByUser(e.Ctx, grace.ID); err != nil || len(list) != 0 {
			t.Errorf("%d live sessions (%v), want 0", len(list), err)
		}
		if n := e.audited(t, "admin:"+adm.ID, "users.set_password", grace.ID); n != 1 {
			t.Errorf("%d audit records, want 1", n)
		}
		p := b.Get(userPage + "?notice=password-set&sessions=1&notifications=0")
		servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, "Temporary password set: ended 1 session;")
		p = servertest.NewBrowser(t).SignIn(e.URL+"/account", grace.Email, temporary)
		servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "Choose your password")
	})
}

// TestConsole_DeleteUser: deleting an account takes its email typed out;
// then its sessions end, its app is told, the account is gone, and the
// console's front page says what was ended. An administrator's own account
// is not offered, and refused if asked.
func TestConsole_DeleteUser(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	henry := e.createUser(t, "henry@example.com", false)
	wiki := e.newApp(t, "wiki")
	sid := e.signInTo(t, servertest.NewBrowser(t), wiki, henry)
	userPage := e.URL + "/admin/users/" + henry.ID
	p := b.Get(userPage)
	servertest.WantPage(t, p, "/admin/users/"+henry.ID, http.StatusOK, `id="delete"`)
	submit := func(id, confirm string) *http.Response {
		t.Helper()
		c := *b.Client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.PostForm(e.URL+"/admin/users/"+id+"/delete", url.Values{"csrf_token": {p.CSRF(t)}, "confirm_email": {confirm}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	for _, confirm := range []string{"", "henry@example.org"} {
		if resp := submit(henry.ID, confirm); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("confirmation %q answered %d, want 400", confirm, resp.StatusCode)
		}
	}
	if _, err := e.Srv.Users.ByID(e.Ctx, henry.ID); err != nil || e.revokedReason(t, sid) != "" {
		t.Fatalf("a refused delete changed something: %v", err)
	}

	resp := submit(henry.ID, " HENRY@example.com ")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/admin?") || !strings.Contains(loc, "notice=deleted") {
		t.Fatalf("delete answered %d to %q", resp.StatusCode, loc)
	}
	servertest.WantPage(t, b.Get(e.URL+loc), "/admin", http.StatusOK, "Account deleted: ended 1 session; 1 app to be told over the back channel.")
	if _, err := e.Srv.Users.ByID(e.Ctx, henry.ID); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("the account after the delete: %v, want not found", err)
	}
	for deadline := time.Now().Add(15 * time.Second); wiki.acceptedCount() != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the app was not told of the deleted account's session in 15 s")
		}
	}
	if n := e.audited(t, "admin:"+adm.ID, "users.delete", henry.ID); n != 1 {
		t.Errorf("%d audit records of the delete, want 1", n)
	}
	if resp := submit(henry.ID, henry.Email); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleting again answered %d, want 404", resp.StatusCode)
	}

	own := b.Get(e.URL + "/admin/users/" + adm.ID)
	if strings.Contains(own.Body, `id="delete"`) {
		t.Error("the administrator's own page offers Delete")
	}
	if resp := submit(adm.ID, adm.Email); resp.StatusCode != http.StatusConflict {
		t.Errorf("deleting one's own account answered %d, want 409", resp.StatusCode)
	}
	if _, err := e.Srv.Users.ByID(e.Ctx, adm.ID); err != nil {
		t.Errorf("the administrator's account after a refused self-delete: %v", err)
	}
}

// TestConsole_CreateUser: an administrator creates an account with a
// temporary password, which the person replaces at the first sign-in; a
// refused create says why, keeps what was typed (not the password) and
// stores nothing.
func TestConsole_CreateUser(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	e.createUser(t, "taken@example.com", false)
	home := b.Get(e.URL + "/admin")
	servertest.WantPage(t, home, "/admin", http.StatusOK, `id="create-user"`)
	submit := func(form url.Values) (*http.Response, string) {
		t.Helper()
		form.Set("csrf_token", home.CSRF(t))
		c := *b.Client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.PostForm(e.URL+"/admin/users", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	const temporary = "temporary for ivy"
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"common password", url.Values{"email": {"ivy@example.com"}, "name": {"Ivy"}, "new_password": {"password1"}},
			http.StatusBadRequest, "The temporary password is one of the most common passwords"},
		{"not an email", url.Values{"email": {"ivy"}, "new_password": {temporary}}, http.StatusBadRequest, "That is not an email address."},
		{"name too long", url.Values{"email": {"ivy@example.com"}, "name": {strings.Repeat("i", users.MaxNameRunes+1)}, "new_password": {temporary}},
			http.StatusBadRequest, "The name must be at most 200 characters"},
		{"email taken", url.Values{"email": {"Taken@example.com"}, "new_password": {temporary}}, http.StatusConflict, "exists already"},
	} {
		resp, body := submit(tc.form)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) || !strings.Contains(body, "No account was created.") {
			t.Errorf("%s: %d, want %d with %q", tc.name, resp.StatusCode, tc.status, tc.want)
		}
		if email := tc.form.Get("email"); !strings.Contains(body, `value="`+email+`"`) || strings.Contains(body, tc.form.Get("new_password")) {
			t.Errorf("%s: the form does not keep the email, or shows the password", tc.name)
		}
	}
	if _, err := e.Srv.Users.ByEmail(e.Ctx, "ivy@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("a refused create stored an account: %v", err)
	}

	resp, _ := submit(url.Values{"email": {"ivy@example.com"}, "name": {"Ivy"}, "new_password": {temporary}})
	loc := resp.Header.Get("Location")
	ivy, err := e.Srv.Users.ByEmail(e.Ctx, "ivy@example.com")
	if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/admin/users/"+ivy.ID+"?") {
		t.Fatalf("create answered %d to %q (%v)", resp.StatusCode, loc, err)
	}
	servertest.WantPage(t, b.Get(e.URL+loc), "/admin/users/"+ivy.ID, http.StatusOK, "Account created with a temporary password.")
	if ivy.Name != "Ivy" || ivy.IsAdmin {
		t.Errorf("ivy = %+v", ivy)
	}
	if n := e.audited(t, "admin:"+adm.ID, "users.create", ivy.ID); n != 1 {
		t.Errorf("%d audit records of the create, want 1", n)
	}
	p := servertest.NewBrowser(t).SignIn(e.URL+"/account", "ivy@example.com", temporary)
	servertest.WantPage(t, p, "/login/new-password", http.StatusOK, "")

	if resp, _ := submit(url.Values{"email": {"jo@example.com"}, "new_password": {temporary}, "admin": {"on"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("creating an administrator answered %d", resp.StatusCode)
	}
	if jo, err := e.Srv.Users.ByEmail(e.Ctx, "jo@example.com"); err != nil || !jo.IsAdmin {
		t.Errorf("jo = %+v (%v), want an administrator", jo, err)
	}
}

// TestConsole_SessionDevice: the console names a session's browser as the
// account page does, with the browser's own string on demand.
func TestConsole_SessionDevice(t *testing.T) {
	e := newEnv(t)
	b, _ := e.adminBrowser(t, "ada@example.com")
	grace := e.createUser(t, "grace@example.com", false)
	const ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
	s := sessionstest.Create(t, e.Srv.Sessions, nil, sessions.NewSession{UserID: grace.ID, AuthTime: time.Now(), UserAgent: ua})
	p := b.Get(e.URL + "/admin/users/" + grace.ID)
	servertest.WantPage(t, p, "/admin/users/"+grace.ID, http.StatusOK, `id="session-`+s.ID+`"`)
	if !strings.Contains(p.Body, `<strong class="device">Chrome on Linux</strong>`) {
		t.Errorf("the session's browser is not named as /account names it:\n%s", p.Body)
	}
	if !strings.Contains(p.Body, `<summary>Browser’s own description</summary><code class="ua">`+ua+`</code>`) {
		t.Error("the browser's own string is not there on demand")
	}
}
