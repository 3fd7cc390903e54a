package account

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/device"
	"github.com/idp/idp/internal/pages"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/sessions"
	"github.com/idp/idp/web"
)

// The person's passkeys: adding one (after the password, as setting up
// TOTP does), renaming and removing. Adding or removing one is a change of
// factors: the person's other sessions end, their apps are told, and the
// audit log and the recent changes say so.
func (h *Handler) mountPasskeys(mux *http.ServeMux) {
	if h.Passkeys == nil {
		return
	}
	mux.HandleFunc("POST /account/passkeys/options", h.passkeyOptions)
	mux.HandleFunc("POST /account/passkeys", h.addPasskey)
	mux.HandleFunc("POST /account/passkeys/{id}/rename", h.renamePasskey)
	mux.HandleFunc("POST /account/passkeys/{id}/remove", h.removePasskey)
}

// maxPasskeyForm bounds a passkey form: the credential plus a few fields.
const maxPasskeyForm = passkey.MaxResponseBytes + 4<<10

// passkeyView is one passkey as the account page lists it.
type passkeyView struct {
	ID, Name          string
	Synced            bool
	Added, AddedISO   string
	LastUsed, UsedISO string // "" when never used
}

func (h *Handler) passkeyViews(ctx context.Context, userID string) ([]passkeyView, error) {
	if h.Passkeys == nil {
		return nil, nil
	}
	list, err := h.Passkeys.List(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := h.Now()
	out := make([]passkeyView, 0, len(list))
	for _, p := range list {
		v := passkeyView{ID: p.ID, Name: p.Name, Synced: p.Synced(), Added: pages.Ago(now, p.CreatedAt),
			AddedISO: p.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")}
		if p.LastUsedAt != nil {
			v.LastUsed, v.UsedISO = pages.Ago(now, *p.LastUsedAt), p.LastUsedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		out = append(out, v)
	}
	return out, nil
}

func (h *Handler) person(ctx context.Context, s sessions.Session) (passkey.Person, error) {
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		return passkey.Person{}, err
	}
	return passkey.Person{ID: u.ID, Email: u.Email, Name: u.Name}, nil
}

// binding names the session a registration belongs to.
func binding(s sessions.Session) string { return "session:" + s.ID }

// passkeyOptions starts adding a passkey, once the password is right. It
// answers JSON for the page's script: the options, or {"error": …}.
func (h *Handler) passkeyOptions(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPasskeyForm)
	web.NoStore(w)
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, msg string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	ctx := r.Context()
	s, err := h.Sessions.Current(ctx, r)
	if err != nil {
		if !errors.Is(err, sessions.ErrNoSession) {
			h.Logger.Error("account: passkey options", "err", err)
		}
		fail(http.StatusUnauthorized, "You are no longer signed in. Reload the page and sign in again.")
		return
	}
	if !h.Sessions.CheckCSRF(r) {
		fail(http.StatusForbidden, "The page is out of date. Reload it and try again.")
		return
	}
	if r.PostFormValue("password") == "" {
		fail(http.StatusBadRequest, "Enter your password to add a passkey.")
		return
	}
	if p, ok := h.checkPasswordQuiet(ctx, w, s, r.PostFormValue("password")); !ok {
		fail(p.Status, p.Message)
		return
	}
	p, err := h.person(ctx, s)
	if err == nil {
		var opts passkey.Options
		if opts, err = h.Passkeys.BeginRegistration(ctx, p, binding(s)); err == nil {
			w.Write(opts)
			return
		}
	}
	if p, known := pages.Explain(err); known {
		fail(p.Status, p.Message)
		return
	}
	h.Logger.ErrorContext(ctx, "account: passkey options", "err", err)
	fail(http.StatusInternalServerError, "Something went wrong on our side. Try again in a moment.")
}

// addPasskey stores the passkey the browser made, and ends the person's
// other sessions with the same transaction.
func (h *Handler) addPasskey(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPasskeyForm)
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	p, err := h.person(ctx, s)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	credential := r.PostFormValue("credential")
	if credential == "" {
		h.renderOverview(w, r, s, http.StatusBadRequest, overviewData{PasskeyError: "Your browser sent no passkey. " +
			"Adding one needs JavaScript and a browser that supports passkeys; nothing was changed."})
		return
	}
	err = h.changeFactors(ctx, s, audit.ActionAddPasskey, func(ctx context.Context) error {
		_, err := h.Passkeys.FinishRegistration(ctx, p, binding(s), []byte(credential), r.PostFormValue("name"),
			device.Name(r.UserAgent()))
		return err
	})
	if p, known := pages.Explain(err); known && passkey.IsVerdict(err) {
		h.renderOverview(w, r, s, p.Status, overviewData{PasskeyError: p.Message + " No passkey was added."})
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?notice=passkey-added", http.StatusSeeOther)
}

func (h *Handler) renamePasskey(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	_, err := h.Passkeys.Rename(r.Context(), s.UserID, r.PathValue("id"), r.PostFormValue("name"))
	if p, known := pages.Explain(err); known && passkey.IsVerdict(err) {
		h.renderOverview(w, r, s, p.Status, overviewData{PasskeyError: p.Message})
		return
	}
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?notice=passkey-renamed", http.StatusSeeOther)
}

// removePasskey removes a passkey after the password: a stolen session
// alone cannot take a factor away. The last second factor stays when 2FA
// is required.
func (h *Handler) removePasskey(w http.ResponseWriter, r *http.Request) {
	s, ok := h.signedInPost(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	fail := func(status int, msg string) {
		h.renderOverview(w, r, s, status, overviewData{PasskeyError: msg})
	}
	u, err := h.Users.ByID(ctx, s.UserID)
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	password := r.PostFormValue("password")
	if password == "" {
		fail(http.StatusBadRequest, "Enter your password to remove a passkey.")
		return
	}
	if p, ok := h.checkPassword(w, r, s, password); !ok {
		if p.Status != 0 {
			fail(p.Status, p.Message+" The passkey was not removed.")
		}
		return
	}
	required := h.RequireMFA || u.RequireMFA
	err = h.changeFactors(ctx, s, audit.ActionRemovePasskey, func(ctx context.Context) error {
		_, left, err := h.Passkeys.Remove(ctx, s.UserID, r.PathValue("id"))
		if err != nil {
			return err
		}
		if left == 0 && required {
			totp, err := h.TOTP.Enabled(ctx, s.UserID)
			if err != nil {
				return err
			}
			if !totp {
				return errLastFactor
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errLastFactor):
		fail(http.StatusForbidden, "This is your only second factor, and two-factor authentication is required for your account, "+
			"so it cannot be removed. Add another passkey or set up an authenticator app first.")
	case passkey.IsVerdict(err):
		p, _ := pages.Explain(err)
		fail(p.Status, p.Message)
	case err != nil:
		h.Errors.Internal(w, r, err)
	default:
		http.Redirect(w, r, "/account?notice=passkey-removed", http.StatusSeeOther)
	}
}

// errLastFactor rolls back the removal of a required last second factor.
var errLastFactor = errors.New("account: the last second factor is required")
