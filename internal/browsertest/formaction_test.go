package browsertest

import (
	"net/url"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

// TestBrowser_FormsReachTheApp: every form whose submission ends at an
// app — the sign-in, the consent page, the sign-out confirmation — gets
// there in Chromium, which applies the pages' form-action to each
// redirect after a submission: the pages allow exactly the app's origin.
func TestBrowser_FormsReachTheApp(t *testing.T) {
	h := servertest.New(t)
	h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")
	// Before the provider first reads (and caches) the client.
	if _, err := h.DB.Pool.Exec(h.Ctx, `UPDATE oauth_clients SET require_consent = true WHERE id = 'app-a'`); err != nil {
		t.Fatal(err)
	}
	b := &tab{t: t, ctx: newBrowser(t)}

	b.signInWithPassword(appA.URL, "")
	b.do("allow on the consent page", chromedp.WaitVisible(chromedp.ID("consent-allow")),
		chromedp.Click(chromedp.ID("consent-allow")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	if loc := b.eval(`location.origin`); loc != appA.URL {
		t.Errorf("after consent the browser is at %s, want App A at %s", loc, appA.URL)
	}

	logout := h.URL + "/oauth2/sessions/logout?" + url.Values{"client_id": {appA.ID},
		"post_logout_redirect_uri": {appA.URL + "/"}}.Encode()
	b.do("confirm signing out", chromedp.Navigate(logout),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/oauth2/sessions/logout/confirm"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/oauth2/sessions/logout/confirm"] button`)),
		chromedp.WaitVisible(chromedp.ID("app-name")))
	if loc := b.eval(`location.href`); loc != appA.URL+"/" {
		t.Errorf("after the sign-out confirmation the browser is at %s, want App A's home %s/", loc, appA.URL)
	}
}
