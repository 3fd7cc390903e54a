package console_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/admin"
	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/servertest"
)

// TestConsole_TokenPolicy: the apps page shows whether an app's tokens
// must be DPoP-bound and whether its access tokens are opaque or JWTs,
// and changes either, audited; the token endpoint follows at once. A
// malformed form, an unknown app or a form without its CSRF token
// changes nothing.
func TestConsole_TokenPolicy(t *testing.T) {
	e := newEnv(t)
	b, adm := e.adminBrowser(t, "ada@example.com")
	rp := e.NewRP("svc")
	cc := clientcredentials.Config{ClientID: "svc", ClientSecret: rp.Secret, TokenURL: e.Issuer + "/oauth2/token"}
	token := func(t *testing.T) (*oauth2.Token, error) {
		t.Helper()
		return cc.Token(e.Ctx)
	}
	row := func(t *testing.T, dpop bool, format string) {
		t.Helper()
		p := b.Get(e.URL + "/admin/clients")
		servertest.CheckMarkup(t, p.Body)
		want := `data-dpop="` + map[bool]string{true: "true", false: "false"}[dpop] + `" data-access-token-format="` + format + `"`
		if !strings.Contains(p.Body, want) {
			t.Fatalf("the apps page does not show %s:\n%s", want, p.Body)
		}
	}
	set := func(t *testing.T, path string, form url.Values, notice string) {
		t.Helper()
		p := b.Get(e.URL + "/admin/clients")
		if !strings.Contains(p.Body, `action="/admin/clients/svc/`+path+`"`) {
			t.Fatalf("no form posting to %s for svc:\n%s", path, p.Body)
		}
		resp, body := send(t, e, b, p, "/admin/clients/svc/"+path, form)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s answered %d:\n%s", path, resp.StatusCode, body)
		}
		servertest.WantPage(t, b.Get(e.URL+resp.Header.Get("Location")), "/admin/clients", http.StatusOK, notice)
	}

	row(t, false, "opaque")
	if tok, err := token(t); err != nil || strings.Count(tok.AccessToken, ".") == 2 {
		t.Fatalf("before any change: %v %v, want an opaque token", tok, err)
	}

	set(t, "dpop", url.Values{"dpop_bound_access_tokens": {"true"}}, "only with a DPoP proof now")
	row(t, true, "opaque")
	var re *oauth2.RetrieveError
	if _, err := token(t); !errors.As(err, &re) || re.ErrorCode != "invalid_request" || !strings.Contains(re.ErrorDescription, "DPoP") {
		t.Fatalf("a token request without a proof after requiring DPoP: %v, want invalid_request", err)
	}
	if n := e.audited(t, audit.Admin(adm.ID), admin.ActionSetDPoPBound, audit.Client("svc")); n != 1 {
		t.Errorf("%d audit records of requiring DPoP, want 1", n)
	}
	set(t, "dpop", url.Values{"dpop_bound_access_tokens": {"false"}}, "with or without a DPoP proof")
	row(t, false, "opaque")

	set(t, "access-token-format", url.Values{"access_token_format": {"jwt"}}, "new access tokens are JWTs")
	row(t, false, "jwt")
	if tok, err := token(t); err != nil || strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("after choosing JWTs: %v %v, want a JWT", tok, err)
	}
	if n := e.audited(t, audit.Admin(adm.ID), admin.ActionSetAccessTokenFormat, audit.Client("svc")); n != 1 {
		t.Errorf("%d audit records of the format, want 1", n)
	}

	for _, tc := range []struct {
		name, path string
		form       url.Values
		status     int
	}{
		{"no DPoP state", "/admin/clients/svc/dpop", url.Values{"dpop_bound_access_tokens": {"perhaps"}}, http.StatusBadRequest},
		{"another format", "/admin/clients/svc/access-token-format", url.Values{"access_token_format": {"saml"}}, http.StatusBadRequest},
		{"no format", "/admin/clients/svc/access-token-format", url.Values{}, http.StatusBadRequest},
		{"unknown app, DPoP", "/admin/clients/nope/dpop", url.Values{"dpop_bound_access_tokens": {"true"}}, http.StatusNotFound},
		{"unknown app, format", "/admin/clients/nope/access-token-format", url.Values{"access_token_format": {"opaque"}}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.Stored(t)
			if resp, body := send(t, e, b, b.Get(e.URL+"/admin/clients"), tc.path, tc.form); resp.StatusCode != tc.status {
				t.Fatalf("answered %d, want %d:\n%s", resp.StatusCode, tc.status, body)
			}
			if changed := before.Changed(e.Stored(t)); len(changed) > 0 {
				t.Errorf("a refused change changed %v", changed)
			}
		})
	}
	t.Run("no CSRF token", func(t *testing.T) {
		c := *b.Client
		resp, err := c.PostForm(e.URL+"/admin/clients/svc/access-token-format", url.Values{"access_token_format": {"opaque"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("answered %d, want 403", resp.StatusCode)
		}
		row(t, false, "jwt")
	})
}
