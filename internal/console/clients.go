package console

import (
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
			ServiceAccount: c.AdminServiceAccount, RequirePAR: c.RequirePAR,
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
		h.Templates.Error(w, http.StatusNotFound, "There is no app with that id. Nothing was changed.",
			"The apps page, /admin/clients, lists them all.")
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
	adm, ok := h.administratorPost(w, r)
	if !ok {
		return
	}
	want, err := strconv.ParseBool(r.PostFormValue("require_par"))
	if err != nil {
		h.renderClients(w, r, adm, http.StatusBadRequest, clientsData{Error: "The form did not say whether the app must use pushed authorization requests. Nothing was changed."})
		return
	}
	err = h.Admin.SetRequirePAR(r.Context(), r.PathValue("id"), want, actor(adm))
	switch {
	case errors.Is(err, clients.ErrNotFound):
		h.Templates.Error(w, http.StatusNotFound, "There is no app with that id. Nothing was changed.",
			"The apps page, /admin/clients, lists them all.")
		return
	case err != nil:
		h.Errors.Internal(w, r, err)
		return
	}
	h.backTo(w, r, "/admin/clients", map[bool]string{true: "par-required", false: "par-optional"}[want], nil)
}
