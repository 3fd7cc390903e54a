package browsertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

// step is a protocol step of a test as a chromedp action.
func step(fn func(ctx context.Context, tg *chromedp.Target) error) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, fn(ctx, tg)
	}
}

// authenticator gives the tab a DevTools virtual authenticator like a
// phone's or a laptop's built-in one with a synced passkey provider:
// CTAP2, internal transport, discoverable credentials, user verification
// that succeeds, presence given at once, credentials backup eligible and
// backed up. It returns its id.
func (b *tab) authenticator() webauthn.AuthenticatorID {
	b.t.Helper()
	var id webauthn.AuthenticatorID
	b.do("add a virtual authenticator", step(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		res, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
				DefaultBackupEligibility: true, DefaultBackupState: true,
				// cdproto always sends a credential's CMTG field, which
				// Chromium accepts only from an authenticator that has one.
				HasCmtgKey: true,
			}})
		id = res.AuthenticatorID
		return err
	}))
	return id
}

// credentials returns what the tab's authenticator holds.
func (b *tab) credentials(id webauthn.AuthenticatorID) []*webauthn.Credential {
	b.t.Helper()
	var creds []*webauthn.Credential
	b.do("read the authenticator's credentials", step(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
		creds = res.Credentials
		return err
	}))
	return creds
}

// addCredential copies a credential into the tab's authenticator: the
// passkey synced from another device.
func (b *tab) addCredential(id webauthn.AuthenticatorID, c *webauthn.Credential) {
	b.t.Helper()
	b.do("sync the passkey to this device", step(func(ctx context.Context, tg *chromedp.Target) error {
		// What a sync carries: the key and whom it is for.
		copied := &webauthn.Credential{CredentialID: c.CredentialID, IsResidentCredential: c.IsResidentCredential, RpID: c.RpID,
			PrivateKey: c.PrivateKey, UserHandle: c.UserHandle, SignCount: c.SignCount, BackupEligibility: c.BackupEligibility,
			BackupState: c.BackupState, UserName: c.UserName, UserDisplayName: c.UserDisplayName}
		_, err := cdp.Call(ctx, tg, webauthn.AddCredential, webauthn.AddCredentialParams{AuthenticatorID: id, Credential: copied})
		return err
	}))
}

// TestBrowser_Passkeys is the passkey story in Chromium with DevTools
// virtual authenticators. On the laptop the person, signed in to App A
// with a password, adds a passkey on /account; App A asks for a
// phishing-resistant sign-in and the person steps up with the passkey.
// The phone, whose authenticator holds the same (synced) passkey, signs
// in to App A with it alone (no password, no code) and to App B without a
// prompt. Removing the passkey on the laptop signs the phone out of both
// apps through back-channel logout. Along the way: the page explains a
// passkey request that found no passkey, and a browser without WebAuthn.
func TestBrowser_Passkeys(t *testing.T) {
	began := time.Now()
	h := servertest.New(t, servertest.Localhost)
	h.CreateUser(email, password)
	appA := demoapptest.Start(t, h, "app-a", "App A")
	appB := demoapptest.Start(t, h, "app-b", "App B")
	laptop := &tab{t: t, ctx: newBrowser(t), shots: screenshotDir(t)}
	laptopKey := laptop.authenticator()

	// A password sign-in (no second factor yet), then a passkey on /account.
	laptop.do("open App A", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	laptop.do("click Sign in", chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`input[autocomplete="username webauthn"]`)))
	if text := laptop.text("#passkey-start"); !strings.Contains(text, "passkey") {
		t.Errorf("the passwordless button says %q", text)
	}
	laptop.screenshot("sign-in-passkey")
	laptop.do("sign in with the password",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")))
	sid := laptop.text("#sid")
	laptop.do("open the account page", chromedp.Navigate(h.Issuer+"/account"), chromedp.WaitVisible(chromedp.ID("passkey-add-start")))
	if text := laptop.text("#passkey-add-start"); !strings.Contains(text, "passkey") {
		t.Errorf("the add button says %q", text)
	}
	laptop.do("add a passkey",
		chromedp.SendKeys(chromedp.ID("passkey-password"), password),
		chromedp.Click(chromedp.ID("passkey-add-start")),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if msg := laptop.text("p.notice"); !strings.Contains(msg, "Your passkey is added") {
		t.Fatalf("after adding a passkey the page says %q", msg)
	}
	if name := laptop.text(".passkey-name"); name != "Chrome on Linux" {
		t.Errorf("the new passkey is called %q, want the browser's name", name)
	}
	if kind := laptop.text(".passkey-item .badge"); kind != "Synced across your devices" {
		t.Errorf("the passkey's kind shows %q", kind)
	}
	if n := laptop.eval(`String(document.querySelectorAll("#activity [data-action='passkey.add']").length)`); n != "1" {
		t.Errorf("recent changes show %s passkey additions, want 1", n)
	}
	laptop.screenshot("account-passkey")
	creds := laptop.credentials(laptopKey)
	if len(creds) != 1 || !creds[0].IsResidentCredential {
		t.Fatalf("the authenticator holds %+v, want one discoverable credential", creds)
	}

	// Step-up: App A asks for acr urn:idp:acr:phr; the passkey answers.
	laptop.do("App A asks for a passkey", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("step-up")),
		chromedp.Click(chromedp.ID("step-up")), chromedp.WaitVisible(chromedp.ID("passkey-start")))
	if laptop.eval(`document.querySelector('form[action="/login/totp"]') ? "codes" : "none"`) != "none" {
		t.Error("the passkey step-up also offers codes")
	}
	laptop.screenshot("step-up-passkey")
	laptop.do("use the passkey", chromedp.Click(chromedp.ID("passkey-start")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	if acr := laptop.text("#acr"); acr != "urn:idp:acr:phr" {
		t.Errorf("after the step-up App A shows acr %q", acr)
	}
	if amr := laptop.text("#amr"); amr != "pwd, swk, pin, mfa" {
		t.Errorf("after the step-up App A shows amr %q", amr)
	}
	if got := laptop.text("#sid"); got != sid {
		t.Errorf("the step-up made session %s, want the same session %s", got, sid)
	}

	// The phone: first with no passkey (the page says what happened), then
	// with the laptop's synced to it.
	phone := newPrivateTab(t, laptop)
	phoneKey := phone.authenticator()
	phone.do("open App A on the phone", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("passkey-start")))
	phone.do("try a passkey the phone does not have", chromedp.Click(chromedp.ID("passkey-start")),
		chromedp.WaitVisible(chromedp.CSS(`#passkey-sign-in [data-passkey-error]`)))
	if msg := phone.text(`#passkey-sign-in [data-passkey-error]`); !strings.Contains(msg, "no passkey for this site was chosen") {
		t.Errorf("a passkey request that found none says %q", msg)
	}
	phone.addCredential(phoneKey, creds[0])
	// The sign-in page's autofill request (conditional mediation) is still
	// waiting, and the virtual authenticator may answer it with the passkey
	// just added before the button is pressed: either way is a sign-in with
	// the passkey alone, so the button is pressed only if it is still there.
	// (A navigation already under way may destroy the page the press runs
	// in: that is the other path succeeding, so its error is no failure.)
	chromedp.Run(phone.ctx, chromedp.Evaluate[string](`(document.getElementById("passkey-start") || {click() {}}).click(), "pressed"`)) //nolint:errcheck
	phone.do("sign in with the passkey alone", chromedp.WaitVisible(chromedp.ID("signed-in")))
	phoneSID := phone.text("#sid")
	if amr, acr := phone.text("#amr"), phone.text("#acr"); amr != "swk, pin, mfa" || acr != "urn:idp:acr:phr" {
		t.Errorf("the passwordless sign-in shows amr %q, acr %q; want swk, pin, mfa and urn:idp:acr:phr", amr, acr)
	}
	if phone.eval(`String(document.getElementById("step-up") === null)`) != "true" {
		t.Error("App A offers a passkey step-up to a passkey session")
	}
	phone.do("open App B on the phone", chromedp.Navigate(appB.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	if got := phone.text("#sid"); got != phoneSID {
		t.Errorf("App B is in session %s, App A in %s: want single sign-on", got, phoneSID)
	}

	// Removing the passkey on the laptop ends the phone's session.
	laptop.do("remove the passkey", chromedp.Navigate(h.Issuer+"/account"), chromedp.WaitVisible(chromedp.CSS(`.passkey-item .remove`)),
		chromedp.SendKeys(chromedp.CSS(`.passkey-item .remove input[type="password"]`), password),
		chromedp.Click(chromedp.CSS(`.passkey-item .remove button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if msg := laptop.text("p.notice"); !strings.Contains(msg, "The passkey is removed") {
		t.Errorf("after the removal the page says %q", msg)
	}
	phone.waitSignedOut(appA, "the phone")
	phone.waitSignedOut(appB, "the phone")
	laptop.do("App A on the laptop", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("signed-in")))

	// A browser without WebAuthn: the page says so, and the password form
	// is all there is.
	old := newPrivateTab(t, laptop)
	old.do("hide WebAuthn", step(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument,
			page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.PublicKeyCredential;`})
		return err
	}))
	old.do("open the sign-in page", chromedp.Navigate(appA.URL+"/"), chromedp.WaitVisible(chromedp.ID("sign-in")),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("passkey-unsupported")))
	if old.eval(`String(document.getElementById("passkey-sign-in").hidden)`) != "true" {
		t.Error("a browser without WebAuthn is shown the passkey button")
	}
	t.Logf("passkey scenario took %s", time.Since(began).Round(time.Millisecond))
}
