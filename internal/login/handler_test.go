package login_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/servertest"
)

const password = "correct horse battery"

// TestHandler_PasswordSubmit checks where a right password leads, and that
// on every way out the account's earlier failures are forgotten (the reset
// travels with the flow's next write) while the address's are kept.
func TestHandler_PasswordSubmit(t *testing.T) {
	h := servertest.New(t)
	app := h.NewRP("app")
	ctx := context.Background()

	tests := []struct {
		name, email string
		setUp       func(t *testing.T, userID string)
		wantPath    string
	}{
		{"no second factor: signed in", "plain@example.com", func(*testing.T, string) {}, "/callback"},
		{"second factor: the code form", "totp@example.com", func(t *testing.T, userID string) {
			e, err := h.Srv.TOTP.Begin(ctx, userID, "test", "someone@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.Srv.TOTP.Confirm(ctx, userID, "test", mfa.GenerateCode(e.Secret, time.Now())); err != nil {
				t.Fatal(err)
			}
		}, "/login/totp"},
		{"second factor required: enrollment", "required@example.com", func(t *testing.T, userID string) {
			if err := h.Srv.Users.SetRequireMFA(ctx, userID, true); err != nil {
				t.Fatal(err)
			}
		}, "/login/enroll"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.DB.Pool.Exec(ctx, `DELETE FROM throttle`); err != nil {
				t.Fatal(err)
			}
			u := h.CreateUser(tc.email, password)
			tc.setUp(t, u.ID)
			br := servertest.NewBrowser(t)
			if p := br.SignIn(app.AuthURL().URL, tc.email, "wrong password!"); p.Status != http.StatusUnauthorized {
				t.Fatalf("wrong password: status %d", p.Status)
			}
			p := br.SignIn(app.AuthURL().URL, tc.email, password)
			if p.URL.Path != tc.wantPath {
				t.Fatalf("right password led to %s (%d), want %s", p.URL, p.Status, tc.wantPath)
			}
			var account, address int
			if err := h.DB.Pool.QueryRow(ctx, `
				SELECT count(*) FILTER (WHERE key LIKE 'pwd-user:%'), count(*) FILTER (WHERE key LIKE 'pwd-ip:%')
				FROM throttle`).Scan(&account, &address); err != nil {
				t.Fatal(err)
			}
			if account != 0 {
				t.Errorf("the account's failures survived a right password")
			}
			if address != 1 {
				t.Errorf("%d address throttle rows, want the failure kept", address)
			}
		})
	}
}
