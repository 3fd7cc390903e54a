package admin

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/bearer"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/internal/users"
)

// DefaultMaxAuthAge is how long after an administrator signed in (with
// two factors) the admin API accepts their tokens: refreshing an access
// token keeps the sign-in's auth_time, so a refresh token alone cannot
// administer for the 30 days it lives. An hour covers a working session at
// a script; after it, the API asks (max_age) for a new sign-in.
const DefaultMaxAuthAge = time.Hour

// caller is who calls the admin API: an administrator, a person who
// signed in recently with two factors, or an admin service account, a
// client acting for itself.
type caller struct {
	user     users.User // the administrator; zero for a service account
	clientID string     // the service account; "" for a person
}

// actor names the caller in the audit log.
func (c caller) actor() string {
	if c.clientID != "" {
		return audit.Client(c.clientID)
	}
	return audit.Admin(c.user.ID)
}

// authenticated runs h for a request authenticate accepts.
func (a *API) authenticated(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := a.authenticate(r)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			a.fail(w, r, err)
		}
	})
}

// authenticate accepts a live access token of this provider with the
// admin scope, held by
//   - a person who is an enabled administrator now (the scope was granted
//     when they were one, which may have changed since), whose sign-in had
//     at least two factors and is at most MaxAuthAge old; otherwise the
//     answer is RFC 9470's insufficient_user_authentication challenge
//     (401), naming the acr_values and/or max_age a new sign-in must meet,
//     also for an administrator's token that lacks the scope because
//     their sign-in had one factor;
//   - or a client that is an admin service account now (its own token,
//     from client_credentials): the mark is read on every request, so
//     removing it, or deleting the client, stops the client at once.
func (a *API) authenticate(r *http.Request) (caller, error) {
	ar, err := bearer.Token(r, a.Tokens, Scope)
	if err != nil {
		return caller{}, err
	}
	ctx := r.Context()
	scoped := ar.GetGrantedScopes().Has(Scope)
	subject := ar.GetSession().GetSubject()
	if subject == "" {
		// No person behind it: a client's own token.
		if !scoped {
			return caller{}, errInsufficientScope
		}
		id := ar.GetClient().GetID()
		on, err := a.Service.Clients.IsAdminServiceAccount(ctx, id)
		if err != nil {
			return caller{}, err
		}
		if !on {
			return caller{}, errNotServiceAccount
		}
		return caller{clientID: id}, nil
	}
	u, err := a.Service.Users.ByID(ctx, subject)
	if errors.Is(err, users.ErrNotFound) || (err == nil && (!u.IsAdmin || u.Disabled())) {
		return caller{}, errInsufficientScope
	}
	if err != nil {
		return caller{}, err
	}
	// An administrator's sign-in is judged before the scope: a
	// password-only session is not granted the scope, and the challenge
	// tells the app what to ask for (acr_values) to get it.
	if err := a.checkSignIn(ar.GetSession()); err != nil {
		return caller{}, err
	}
	if !scoped {
		return caller{}, errInsufficientScope
	}
	return caller{user: u}, nil
}

// checkSignIn refuses a person's token whose sign-in was not strong or
// recent enough, with the challenge of RFC 9470 §3 that says what a new
// one must meet.
func (a *API) checkSignIn(s fosite.Session) error {
	var acr string
	var authTime time.Time
	if c, ok := s.(interface{ IDTokenClaims() *jwt.IDTokenClaims }); ok && c.IDTokenClaims() != nil {
		acr, authTime = c.IDTokenClaims().AuthenticationContextClassReference, c.IDTokenClaims().AuthTime
	}
	maxAge := a.MaxAuthAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAuthAge
	}
	var params, desc []string
	want, wantText := sessions.ACRMFA, "a sign-in with two factors"
	if a.RequirePasskey {
		want, wantText = sessions.ACRPhishingResistant, "a sign-in with a passkey"
	}
	if !sessions.ACRSatisfies(acr, want) {
		params = append(params, `acr_values="`+want+`"`)
		desc = append(desc, wantText)
	}
	if authTime.IsZero() || a.Service.now().Sub(authTime) > maxAge {
		params = append(params, `max_age="`+strconv.FormatInt(int64(maxAge/time.Second), 10)+`"`)
		desc = append(desc, "a sign-in in the last "+pages.Duration(maxAge))
	}
	if len(params) == 0 {
		return nil
	}
	return &bearer.Error{Status: http.StatusUnauthorized, Code: "insufficient_user_authentication",
		Description: "The admin API needs " + strings.Join(desc, " and ") + ": sign in again and get a new token.",
		Params:      ", " + strings.Join(params, ", ")}
}
