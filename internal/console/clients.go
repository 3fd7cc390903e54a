package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/idp/idp/internal/clients"
)

// clientsData is the apps page: every registered client, and for those
// that can be one, whether it is an admin service account.
type clientsData struct {
	Notice, Error string
	Clients       []clientRow
	NeedCode      bool
}

type clientRow struct {
	ID, Name, Kind, Grants string
	ServiceAccount         bool
	// RequirePAR: the app must push its authorization requests.
	RequirePAR bool
	// DPoP: the app gets tokens only with a DPoP proof (RFC 9449).
	DPoP bool
	// JWT: the app's access tokens are JWTs (RFC 9068), else opaque.
	JWT bool
	// Eligible: confidential with client_credentials, so it may be marked.
	Eligible bool
}

// clients is GET /admin/clients.
func (h *Handler) clients(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administrator(w, r)
	if !ok {
		return
	}
	h.renderClients(w, r, adm, http.StatusOK, clientsData{Notice: notice(r)})
}

func (h *Handler) renderClients(w http.ResponseWriter, r *http.Request, adm signedIn, status int, d clientsData) {
	list, err := h.Admin.Clients.List(r.Context())
	if err != nil {
		h.Errors.Internal(w, r, err)
		return
	}
	for _, c := range list {
		kind := "confidential"
		switch {
		case c.Public:
			kind = "public"
		case c.TokenEndpointAuthMethod == clients.PrivateKeyJWT:
			kind = "confidential, private_key_jwt"
		}
		d.Clients = append(d.Clients, clientRow{ID: c.ID, Name: c.Name, Kind: kind, Grants: strings.Join(c.GrantTypes, ", "),
			ServiceAccount: c.AdminServiceAccount, RequirePAR: c.RequirePAR, DPoP: c.DPoPBoundAccessTokens, JWT: c.JWTAccessTokens(),
			Eligible: !c.Public && slices.Contains(c.GrantTypes, clients.GrantClientCredentials)})
	}
	d.NeedCode = h.needsCode(adm)
	h.Templates.Render(w, status, "admin-clients", "Apps", h.Sessions.CSRFToken(r), d)
}

// setServiceAccount marks an app as an admin service account, or removes
// the mark ("admin_service_account" is the state wanted). Either needs a
// fresh code: the mark hands the admin API to whoever holds the app's
// secret.
func (h *Handler) setServiceAccount(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	refuse := func(status int, msg string) { h.renderClients(w, r, adm, status, clientsData{Error: msg}) }
	want, err := strconv.ParseBool(r.PostFormValue("admin_service_account"))
	if err != nil {
		refuse(http.StatusBadRequest, "The form did not say whether the app is to be an admin service account. Nothing was changed.")
		return
	}
	if !h.confirmed(w, r, &adm, refuse) {
		return
	}
	err = h.Admin.SetServiceAccount(r.Context(), r.PathValue("id"), want, actor(adm))
	switch {
	case errors.Is(err, clients.ErrNotFound):
		h.unknownApp(w)
		return
	case errors.Is(err, clients.ErrInvalid):
		refuse(http.StatusConflict, "Only a confidential app with the client_credentials grant can be an admin service account. Nothing was changed.")
		return
	case err != nil:
		h.Errors.Internal(w, r, err)
		return
	}
	h.backTo(w, r, "/admin/clients", map[bool]string{true: "service-account-on", false: "service-account-off"}[want], nil)
}

// setRequirePAR makes an app send its authorization requests only through
// PAR, or either way ("require_par" is the state wanted). Not a fresh-code
// action: it changes how an app asks, not who may administer.
func (h *Handler) setRequirePAR(w http.ResponseWriter, r *http.Request) {
	h.switchClientPolicy(w, r, "require_par", "whether the app must use pushed authorization requests",
		h.Admin.SetRequirePAR, "par-required", "par-optional")
}

// setDPoP makes an app get tokens only with a DPoP proof, or with or
// without one ("dpop_bound_access_tokens" is the state wanted). Not a
// fresh-code action, as PAR: it changes how an app asks.
func (h *Handler) setDPoP(w http.ResponseWriter, r *http.Request) {
	h.switchClientPolicy(w, r, "dpop_bound_access_tokens", "whether the app's tokens must be DPoP-bound",
		h.Admin.SetDPoPBound, "dpop-required", "dpop-optional")
}

// switchClientPolicy turns one of an app's policies on or off: field is
// the form's boolean, what says what it decides (for the error), set
// makes the change, and on and off name the flash shown afterwards.
func (h *Handler) switchClientPolicy(w http.ResponseWriter, r *http.Request, field, what string,
	set func(ctx context.Context, clientID string, on bool, actor string) error, on, off string) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	want, err := strconv.ParseBool(r.PostFormValue(field))
	if err != nil {
		h.renderClients(w, r, adm, http.StatusBadRequest, clientsData{Error: "The form did not say " + what + ". Nothing was changed."})
		return
	}
	err = set(r.Context(), r.PathValue("id"), want, actor(adm))
	switch {
	case errors.Is(err, clients.ErrNotFound):
		h.unknownApp(w)
		return
	case err != nil:
		h.Errors.Internal(w, r, err)
		return
	}
	h.backTo(w, r, "/admin/clients", map[bool]string{true: on, false: off}[want], nil)
}

// setAccessTokenFormat makes an app's access tokens opaque or JWTs from
// now on ("access_token_format"). Not a fresh-code action either.
func (h *Handler) setAccessTokenFormat(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	format := r.PostFormValue("access_token_format")
	err := h.Admin.SetAccessTokenFormat(r.Context(), r.PathValue("id"), format, actor(adm))
	switch {
	case errors.Is(err, clients.ErrNotFound):
		h.unknownApp(w)
		return
	case errors.Is(err, clients.ErrInvalid):
		h.renderClients(w, r, adm, http.StatusBadRequest, clientsData{Error: "An app's access tokens are opaque or JWTs; the form asked for neither. Nothing was changed."})
		return
	case err != nil:
		h.Errors.Internal(w, r, err)
		return
	}
	h.backTo(w, r, "/admin/clients", "format-"+format, nil)
}

// unknownApp answers an action on an app id nobody registered.
func (h *Handler) unknownApp(w http.ResponseWriter) {
	h.Templates.Error(w, http.StatusNotFound, "There is no app with that id. Nothing was changed.",
		"The apps page, /admin/clients, lists them all.")
}
