// Package admin owns the administrators' API under /admin/api: finding
// users, listing their sessions with each app's logout-notification state,
// and revoking all of a user's sessions and tokens. It accepts only bearer
// access tokens from this provider with the admin scope, held by a user who
// is an administrator now.
package admin

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// API serves /admin/api.
type API struct {
	Pool     *pgxpool.Pool
	Users    *users.Store
	Sessions *sessions.Manager
	// Tokens introspects bearer tokens (the fosite provider).
	Tokens fosite.OAuth2Provider
	Logger *slog.Logger
	Now    func() time.Time
}

// Mount registers the admin routes.
func (a *API) Mount(mux *http.ServeMux) {}
