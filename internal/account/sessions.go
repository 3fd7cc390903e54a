package account

import (
	"context"
	"net/http"
	"time"

	"github.com/idp/idp/internal/device"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/sessions"
)

// sessionView is one session as the account page lists it.
type sessionView struct {
	ID          string
	Device      string // "Firefox on Linux"
	UserAgent   string // the full string, for the tooltip
	IP          string
	Started     string
	StartedISO  string
	LastSeen    string // "5 minutes ago"
	LastSeenISO string
	Apps        []appView
	Current     bool
	MultiFactor bool
	// Remembered: "keep me signed in" was ticked, so the cookie outlives
	// the browser, at most until Until (the absolute expiry).
	Remembered      bool
	Until, UntilISO string
}

type appView struct {
	ID, Name string // Name is "" when it would only repeat ID
}

// sessionViews lists the current session first, then the others newest
// first (ListByUser's order).
func (h *Handler) sessionViews(ctx context.Context, list []sessions.Session, currentSID string) []sessionView {
	now := h.Now()
	out := make([]sessionView, 0, len(list))
	for _, s := range list {
		v := sessionView{
			ID: s.ID, Device: device.Name(s.UserAgent), UserAgent: s.UserAgent, IP: s.IP,
			Started: pages.Time(s.CreatedAt), StartedISO: s.CreatedAt.UTC().Format(time.RFC3339),
			LastSeen: pages.Ago(now, s.LastSeenAt), LastSeenISO: s.LastSeenAt.UTC().Format(time.RFC3339),
			Current: s.ID == currentSID, MultiFactor: s.MultiFactor(),
			Remembered: s.Remember, Until: pages.Time(s.AbsoluteExpiresAt), UntilISO: s.AbsoluteExpiresAt.UTC().Format(time.RFC3339),
		}
		for _, id := range s.Clients {
			a := appView{ID: id}
			if h.ClientName != nil {
				if n := h.ClientName(ctx, id); n != id {
					a.Name = n
				}
			}
			v.Apps = append(v.Apps, a)
		}
		if v.Current {
			out = append([]sessionView{v}, out...)
		} else {
			out = append(out, v)
		}
	}
	return out
}

// signOutSession ends one of the person's sessions. The revocation names
// the user as well as the sid, so a sid of someone else's session matches
// nothing and ends nothing.
func (h *Handler) signOutSession(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	sid := r.PathValue("sid")
	res, err := h.Sessions.Revoke(r.Context(), sessions.Revocation{
		SIDs: []string{sid}, UserID: s.UserID, Reason: sessions.ReasonUserSignOut, Actor: actor(s),
	})
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	switch {
	case res.Sessions == 0:
		h.renderOverview(w, r, s, http.StatusNotFound, overviewData{
			Error: "That session was not found among yours; it may have ended already. The list below is up to date."})
	case sid == s.ID:
		h.signedOut(w, signedOutData{})
	default:
		// Post/redirect/get: a reload does not post the form again.
		http.Redirect(w, r, "/account?notice=session-ended", http.StatusSeeOther)
	}
}

// signOutEverywhere ends all the person's sessions, this one included, and
// their offline_access tokens: after it nothing signed in as them remains.
// It asks first, saying what will end (the form's confirm=yes is the
// answer), and says afterwards what did.
func (h *Handler) signOutEverywhere(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if r.PostFormValue("confirm") != "yes" {
		list, err := h.Sessions.ListByUser(ctx, s.UserID)
		if err != nil {
			h.Errors.Internal(w, r, err)
			return
		}
		apps := map[string]bool{}
		for _, other := range list {
			for _, c := range other.Clients {
				apps[c] = true
			}
		}
		h.Templates.Render(w, http.StatusOK, "account-sign-out-everywhere", "Sign out everywhere?", h.Sessions.CSRFToken(r),
			signOutCounts{Sessions: pages.Plural(len(list), "session"), Apps: pages.Plural(len(apps), "app")})
		return
	}
	res, err := h.Sessions.Revoke(ctx, sessions.Revocation{
		UserID: s.UserID, Reason: sessions.ReasonUserSignOutAll, IncludeOffline: true, Actor: actor(s),
	})
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	h.signedOut(w, signedOutData{Everywhere: true, Ended: signOutCounts{
		Sessions: pages.Plural(res.Sessions, "session"), Apps: pages.Plural(res.Notifications, "logout notification")}})
}

// signOutCounts says what signing out everywhere ends ("2 sessions", "1
// app" to tell), or ended ("2 sessions", "3 logout notifications" sent).
type signOutCounts struct {
	Sessions, Apps string
}

type signedOutData struct {
	Everywhere bool
	Ended      signOutCounts
}

// signedOut tells the browser to forget its (now revoked) session cookie
// and shows that it is signed out.
func (h *Handler) signedOut(w http.ResponseWriter, d signedOutData) {
	h.Sessions.ClearCookie(w)
	h.Templates.Render(w, http.StatusOK, "account-signed-out", "Signed out", "", d)
}
