package clients_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
)

func newStore(t *testing.T) (*clients.Store, *clocktest.Clock) {
	t.Helper()
	clk := clocktest.New(time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC))
	s := clients.NewStore(dbtest.New(t).Pool)
	s.Now = clk.Now
	return s, clk
}

// webApp is a valid confidential client to vary from.
func webApp() clients.Client {
	return clients.Client{
		ID:                               "web-app",
		Name:                             "Web App",
		RedirectURIs:                     []string{"https://app.example.com/callback"},
		PostLogoutRedirectURIs:           []string{"https://app.example.com/"},
		BackchannelLogoutURI:             "https://app.example.com/backchannel-logout",
		BackchannelLogoutSessionRequired: true,
	}
}

func rows(t *testing.T, s *clients.Store) int {
	t.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(), `SELECT count(*) FROM oauth_clients`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStore_Create(t *testing.T) {
	ctx := context.Background()

	t.Run("round trip with defaults", func(t *testing.T) {
		s, clk := newStore(t)
		secret, err := s.Create(ctx, webApp())
		if err != nil {
			t.Fatal(err)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(raw) != 32 {
			t.Fatalf("secret %q is not 32 bytes of unpadded base64url (%v)", secret, err)
		}
		c, err := s.Get(ctx, "web-app")
		if err != nil {
			t.Fatal(err)
		}
		want := webApp()
		want.GrantTypes = []string{"authorization_code", "refresh_token"}
		want.ResponseTypes = []string{"code"}
		want.Scopes = []string{"openid", "profile", "email", "offline_access"}
		want.Audience = []string{}
		want.IDTokenAlg = "RS256"
		want.CreatedAt = clk.Now()
		want.SecretHash = c.SecretHash
		if !equal(*c, want) {
			t.Fatalf("Get =\n%+v\nwant\n%+v", *c, want)
		}
		if c.IsPublic() || c.GetID() != "web-app" || !slices.Equal(c.GetRedirectURIs(), want.RedirectURIs) {
			t.Fatalf("fosite view wrong: %+v", c)
		}
		h := clients.SecretHasher{}
		if err := h.Compare(ctx, c.GetHashedSecret(), []byte(secret)); err != nil {
			t.Fatalf("secret does not verify: %v", err)
		}
		if err := h.Compare(ctx, c.GetHashedSecret(), []byte(secret+"x")); !errors.Is(err, clients.ErrSecretMismatch) {
			t.Fatalf("wrong secret: err = %v, want ErrSecretMismatch", err)
		}
		if strings.Contains(string(c.SecretHash), secret) {
			t.Fatal("secret stored in the clear")
		}
	})

	t.Run("public client has no secret", func(t *testing.T) {
		s, _ := newStore(t)
		c := webApp()
		c.Public = true
		c.IDTokenAlg = "ES256"
		secret, err := s.Create(ctx, c)
		if err != nil || secret != "" {
			t.Fatalf("Create = %q, %v; want no secret", secret, err)
		}
		got, err := s.Get(ctx, c.ID)
		if err != nil || !got.IsPublic() || got.GetHashedSecret() != nil || got.IDTokenAlg != "ES256" {
			t.Fatalf("Get = %+v, %v", got, err)
		}
	})

	t.Run("machine client needs no redirect URI", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.Create(ctx, clients.Client{ID: "batch", GrantTypes: []string{"client_credentials"}}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("duplicate id", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.Create(ctx, webApp()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, webApp()); !errors.Is(err, clients.ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
}

func TestStore_Create_invalid(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *clients.Client)
		message string // part of the error
	}{
		{"empty id", func(c *clients.Client) { c.ID = "" }, "client id"},
		{"id with a space", func(c *clients.Client) { c.ID = "my app" }, "client id"},
		{"id too long", func(c *clients.Client) { c.ID = strings.Repeat("a", 65) }, "client id"},
		{"no redirect URI", func(c *clients.Client) { c.RedirectURIs = nil }, "at least one redirect URI"},
		{"relative redirect URI", func(c *clients.Client) { c.RedirectURIs = []string{"/callback"} }, "absolute URL"},
		{"redirect URI with fragment", func(c *clients.Client) { c.RedirectURIs = []string{"https://app.example.com/cb#x"} }, "fragment"},
		{"http redirect URI", func(c *clients.Client) { c.RedirectURIs = []string{"http://app.example.com/cb"} }, "must use https"},
		{"http to a look-alike of localhost", func(c *clients.Client) { c.RedirectURIs = []string{"http://localhost.evil.com/cb"} }, "must use https"},
		{"custom scheme", func(c *clients.Client) { c.RedirectURIs = []string{"javascript://x/%0aalert(1)"} }, "scheme"},
		{"wildcard host", func(c *clients.Client) { c.RedirectURIs = []string{"https://*.example.com/cb"} }, "wildcard"},
		{"user info", func(c *clients.Client) { c.RedirectURIs = []string{"https://a@app.example.com/cb"} }, "user information"},
		{"http post-logout URI", func(c *clients.Client) { c.PostLogoutRedirectURIs = []string{"http://app.example.com/"} }, "post-logout redirect URI"},
		{"http back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "http://app.example.com/bc" }, "back-channel logout URI"},
		{"loopback back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "http://127.0.0.1:9001/bc" }, "IDP_ALLOW_PRIVATE_BACKCHANNEL"},
		{"localhost back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "http://localhost:9001/bc" }, "IDP_ALLOW_PRIVATE_BACKCHANNEL"},
		{"private back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "https://10.0.0.7/bc" }, "private network"},
		{"link-local back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "https://169.254.169.254/latest" }, "link-local"},
		{"IPv6 private back-channel URI", func(c *clients.Client) { c.BackchannelLogoutURI = "https://[fd00::7]/bc" }, "private network"},
		{"implicit grant", func(c *clients.Client) { c.GrantTypes = []string{"implicit"} }, "removed by OAuth 2.1"},
		{"password grant", func(c *clients.Client) { c.GrantTypes = []string{"authorization_code", "password"} }, "password grant"},
		{"hybrid", func(c *clients.Client) { c.GrantTypes = []string{"hybrid"} }, "hybrid"},
		{"unknown grant", func(c *clients.Client) { c.GrantTypes = []string{"magic"} }, "unknown grant type"},
		{"refresh without code", func(c *clients.Client) { c.GrantTypes = []string{"client_credentials", "refresh_token"} }, "needs authorization_code"},
		{"public client_credentials", func(c *clients.Client) {
			c.Public = true
			c.GrantTypes = []string{"authorization_code", "client_credentials"}
		}, "public client cannot use client_credentials"},
		{"token response type", func(c *clients.Client) { c.ResponseTypes = []string{"code", "token"} }, "response types"},
		{"id_token response type", func(c *clients.Client) { c.ResponseTypes = []string{"id_token"} }, "response types"},
		{"scope with a space", func(c *clients.Client) { c.Scopes = []string{"openid profile"} }, "scope"},
		{"bad algorithm", func(c *clients.Client) { c.IDTokenAlg = "HS256" }, "ID token algorithm"},
		{"none algorithm", func(c *clients.Client) { c.IDTokenAlg = "none" }, "ID token algorithm"},
	}
	s, _ := newStore(t) // nothing is written, so one database serves all
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := webApp()
			tc.edit(&c)
			secret, err := s.Create(context.Background(), c)
			if !errors.Is(err, clients.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %q does not mention %q", err, tc.message)
			}
			if secret != "" {
				t.Fatal("a secret was returned with an error")
			}
			if n := rows(t, s); n != 0 {
				t.Fatalf("%d clients written, want 0", n)
			}
		})
	}

	t.Run("every problem is reported at once", func(t *testing.T) {
		c := webApp()
		c.ID = "bad id"
		c.IDTokenAlg = "HS256"
		_, err := s.Create(context.Background(), c)
		if err == nil || !strings.Contains(err.Error(), "client id") || !strings.Contains(err.Error(), "HS256") {
			t.Fatalf("err = %v, want both problems", err)
		}
	})

	t.Run("private back-channel URIs when the operator allows them", func(t *testing.T) {
		allowing := clients.NewStore(s.Pool)
		allowing.AllowPrivateBackchannel = true
		for i, uri := range []string{"http://127.0.0.1:9001/bc", "http://localhost:9002/bc", "https://10.0.0.7/bc"} {
			c := webApp()
			c.ID, c.BackchannelLogoutURI = fmt.Sprintf("private-%d", i), uri
			if _, err := allowing.Create(context.Background(), c); err != nil {
				t.Errorf("%s: %v", uri, err)
			}
		}
	})

	t.Run("loopback http is allowed", func(t *testing.T) {
		c := webApp()
		c.RedirectURIs = []string{"http://localhost:3000/cb", "http://127.0.0.1:8080/cb", "http://[::1]/cb"}
		if _, err := s.Create(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStore_Get(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	if _, err := s.Create(ctx, webApp()); err != nil {
		t.Fatal(err)
	}

	t.Run("unknown id", func(t *testing.T) {
		for _, id := range []string{"nope", "", "bad id!", strings.Repeat("x", 100)} {
			if _, err := s.Get(ctx, id); !errors.Is(err, clients.ErrNotFound) {
				t.Fatalf("Get(%q) err = %v, want ErrNotFound", id, err)
			}
			c, err := s.GetClient(ctx, id)
			if !errors.Is(err, fosite.ErrNotFound) {
				t.Fatalf("GetClient(%q) err = %v, want fosite.ErrNotFound", id, err)
			}
			if c != nil {
				t.Fatalf("GetClient(%q) returned a client with the error", id)
			}
		}
	})

	t.Run("GetClient", func(t *testing.T) {
		c, err := s.GetClient(ctx, "web-app")
		if err != nil || c.GetID() != "web-app" || !slices.Equal(c.GetGrantTypes(), fosite.Arguments{"authorization_code", "refresh_token"}) {
			t.Fatalf("GetClient = %+v, %v", c, err)
		}
		if _, ok := c.(fosite.OpenIDConnectClient); ok {
			t.Fatal("client implements fosite.OpenIDConnectClient; fosite would then enforce one auth method")
		}
	})

	t.Run("cached until the TTL", func(t *testing.T) {
		if _, err := s.Get(ctx, "web-app"); err != nil {
			t.Fatal(err)
		}
		// Changed behind the store's back (as by another instance).
		if _, err := s.Pool.Exec(ctx, `UPDATE oauth_clients SET name = 'Renamed' WHERE id = 'web-app'`); err != nil {
			t.Fatal(err)
		}
		c, _ := s.Get(ctx, "web-app")
		if c.Name != "Web App" {
			t.Fatalf("Name = %q, want the cached %q", c.Name, "Web App")
		}
		clk.Advance(s.TTL)
		c, _ = s.Get(ctx, "web-app")
		if c.Name != "Renamed" {
			t.Fatalf("Name = %q after the TTL, want %q", c.Name, "Renamed")
		}
	})

	t.Run("callers get copies", func(t *testing.T) {
		c, _ := s.Get(ctx, "web-app")
		c.RedirectURIs[0] = "https://evil.example.com/"
		c2, _ := s.Get(ctx, "web-app")
		if c2.RedirectURIs[0] != "https://app.example.com/callback" {
			t.Fatalf("cached client was changed through a returned copy: %v", c2.RedirectURIs)
		}
	})
}

func TestStore_List(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	for _, id := range []string{"b", "a"} {
		c := webApp()
		c.ID = id
		if _, err := s.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestStore_Delete(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.Create(ctx, webApp()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "web-app"); err != nil { // now cached
		t.Fatal(err)
	}
	// A token issued to the client must die with it.
	if _, err := s.Pool.Exec(ctx, `INSERT INTO oauth_access_tokens (signature_hash, request_id, client_id, requested_at, request)
		VALUES ('\x01', 'r1', 'web-app', now(), '{}'), ('\x02', 'r2', 'other', now(), '{}')`); err != nil {
		t.Fatal(err)
	}

	t.Run("unknown", func(t *testing.T) {
		if err := s.Delete(ctx, "nope"); !errors.Is(err, clients.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("deletes the client, its tokens and its cache entry", func(t *testing.T) {
		if err := s.Delete(ctx, "web-app"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "web-app"); !errors.Is(err, clients.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
		}
		if tokens := dbtest.Column[string](t, s.Pool, `SELECT client_id FROM oauth_access_tokens`); !slices.Equal(tokens, []string{"other"}) {
			t.Fatalf("access tokens left for %v, want only [other]", tokens)
		}
	})
}

func equal(a, b clients.Client) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Public == b.Public &&
		slices.Equal(a.SecretHash, b.SecretHash) &&
		slices.Equal(a.RedirectURIs, b.RedirectURIs) &&
		slices.Equal(a.PostLogoutRedirectURIs, b.PostLogoutRedirectURIs) &&
		a.BackchannelLogoutURI == b.BackchannelLogoutURI &&
		a.BackchannelLogoutSessionRequired == b.BackchannelLogoutSessionRequired &&
		slices.Equal(a.GrantTypes, b.GrantTypes) && slices.Equal(a.ResponseTypes, b.ResponseTypes) &&
		slices.Equal(a.Scopes, b.Scopes) && slices.Equal(a.Audience, b.Audience) &&
		a.RequireConsent == b.RequireConsent && a.IDTokenAlg == b.IDTokenAlg &&
		a.CreatedAt.Equal(b.CreatedAt)
}
