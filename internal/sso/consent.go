package sso

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/web"
)

// Consent applies to clients registered with --require-consent. The
// consent page posts back to the authorization endpoint with the original
// parameters and a decision, so the request is validated by fosite again
// and nothing about it is kept between the two steps.

const consentDecision = "consent_decision"

type consentPage struct {
	Client string
	Scopes []scopeText
	Fields [][2]string // the authorization request, as hidden fields
}

type scopeText struct{ Name, Text string }

var scopeTexts = map[string]string{
	"openid":         "Know who you are (your account id)",
	"profile":        "See your name",
	"email":          "See your email address",
	"offline_access": "Keep access while you are signed out",
	"admin":          "Administer this sign-in service",
}

// consent decides whether the request may go on. It returns false after it
// has answered: with the consent page, or with an error to the app. save
// reports a decision to allow, which the caller queues (queueSaveConsent)
// with the code: a request refused after this point (fosite checks prompt,
// for one, only when it issues the code) must not leave a consent behind.
func (p *Provider) consent(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, s sessions.Session, c *clients.Client, prompt []string) (ok, save bool) {
	ctx := r.Context()
	if c == nil || !c.RequireConsent {
		return true, false
	}
	scopes := []string(ar.GetGrantedScopes())
	switch ar.GetRequestForm().Get(consentDecision) {
	case "allow":
		if !p.Sessions.CheckCSRF(r) {
			p.Errors.StaleForm(w, "Go back to the application and try again.")
			return false, false
		}
		return true, true
	case "deny":
		if !p.Sessions.CheckCSRF(r) {
			p.Errors.StaleForm(w, "Go back to the application and try again.")
			return false, false
		}
		p.OAuth2.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The person did not allow the request."))
		return false, false
	}
	given, err := p.consented(ctx, s.UserID, c.ID, scopes)
	if err != nil {
		p.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
		return false, false
	}
	if given && !slices.Contains(prompt, "consent") {
		return true, false
	}
	if slices.Contains(prompt, "none") {
		p.OAuth2.WriteAuthorizeError(ctx, w, ar, fosite.ErrConsentRequired)
		return false, false
	}
	page := consentPage{Client: p.clientName(r, c.ID)}
	for _, sc := range scopes {
		text := scopeTexts[sc]
		if text == "" {
			text = "Use the permission “" + sc + "”"
		}
		page.Scopes = append(page.Scopes, scopeText{sc, text})
	}
	form := knownParams(ar.GetRequestForm())
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range form[k] {
			if k == "prompt" {
				v = withoutConsentPrompt(v)
			}
			page.Fields = append(page.Fields, [2]string{k, v})
		}
	}
	web.NoStore(w)
	// Allowing or denying goes on to the app's redirect URI.
	p.Templates.Render(w, http.StatusOK, "consent", "Allow access", p.Sessions.CSRFToken(r), page, c.RedirectURIs...)
	return false, false
}

// withoutConsentPrompt drops "consent" (the decision posted back answers
// it) and "login" (the person has just signed in) from a prompt value.
func withoutConsentPrompt(v string) string {
	var keep []string
	for _, p := range strings.Fields(v) {
		if p != "consent" && p != "login" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, " ")
}

func (p *Provider) consented(ctx context.Context, userID, clientID string, scopes []string) (bool, error) {
	var have []string
	err := p.Store.Pool.QueryRow(ctx, `SELECT scopes FROM consents WHERE user_id = $1::uuid AND client_id = $2`,
		userID, clientID).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, s := range scopes {
		if !slices.Contains(have, s) {
			return false, nil
		}
	}
	return true, nil
}

// queueSaveConsent queues in u the person's decision to allow clientID
// scopes, sent with the code it allows or not at all.
func (p *Provider) queueSaveConsent(u *db.Unit, userID, clientID string, scopes []string) {
	u.Queue(`
		INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1::uuid, $2, $3, $4)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = EXCLUDED.scopes, granted_at = EXCLUDED.granted_at`,
		userID, clientID, scopes, p.Now())
}
