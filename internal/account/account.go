// Package account owns the signed-in person's own pages at /account: their
// sessions (and ending them), and their second factor (enrolling, recovery
// codes, disabling).
package account

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/idp/idp/internal/login"
	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
	"github.com/idp/idp/web"
)

// Handler serves /account.
type Handler struct {
	Sessions   *sessions.Manager
	Users      *users.Store
	TOTP       *mfa.TOTP
	Login      *login.Handler // starts a sign-in for visitors without a session
	Templates  *web.Templates
	Logger     *slog.Logger
	Now        func() time.Time
	RequireMFA bool
}

// Mount registers the account routes.
func (h *Handler) Mount(mux *http.ServeMux) {}
