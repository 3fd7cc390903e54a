package ssf

import (
	"context"
	"time"

	"github.com/idp/idp/internal/audit"
)

// credentialChanges are the audit actions that change a sign-in factor,
// with the CAEP credential type and change type they are.
var credentialChanges = map[string][2]string{
	audit.ActionChangePassword:          {CredentialPassword, ChangeUpdate},
	audit.ActionEnableMFA:               {CredentialApp, ChangeCreate},
	audit.ActionDisableMFA:              {CredentialApp, ChangeDelete},
	audit.ActionRegenerateRecoveryCodes: {CredentialRecoveryCodes, ChangeUpdate},
	audit.ActionAddPasskey:              {CredentialFIDO2Platform, ChangeCreate},
	audit.ActionRemovePasskey:           {CredentialFIDO2Platform, ChangeDelete},
	// An administrator's actions (package admin).
	"users.set_password":   {CredentialPassword, ChangeUpdate},
	"users.reset_mfa":      {CredentialApp, ChangeDelete},
	"users.remove_passkey": {CredentialFIDO2Platform, ChangeDelete},
}

// friendlyNames name the credential where CAEP's type is only the
// nearest: recovery codes have no type of their own.
var friendlyNames = map[string]string{audit.ActionRegenerateRecoveryCodes: "recovery codes"}

// OnFactorsChanged is a sessions.Manager hook: a person changed one of
// their own sign-in factors (CAEP credential-change, initiated by the
// user).
func (p *Publisher) OnFactorsChanged(ctx context.Context, userID, action string) error {
	return p.publishChange(ctx, userID, action, InitiatorUser, false)
}

// OnAdminChange is an admin.Service hook: an administrator changed an
// account. Disabling, enabling and deleting it are RISC's
// account-disabled, account-enabled and account-purged; a password they
// set is a credential-change, and when it is temporary also RISC's
// account-credential-change-required; removing factors is a
// credential-change.
func (p *Publisher) OnAdminChange(ctx context.Context, userID, action string, details any) error {
	switch action {
	case "users.disable":
		return p.publishOne(ctx, userID, EventAccountDisabled, AccountDisabled(""))
	case "users.enable":
		return p.publishOne(ctx, userID, EventAccountEnabled, AccountEnabled())
	case "users.delete":
		return p.publishOne(ctx, userID, EventAccountPurged, AccountPurged())
	}
	temporary := false
	if d, ok := details.(map[string]bool); ok {
		temporary = d["temporary"]
	}
	return p.publishChange(ctx, userID, action, InitiatorAdmin, temporary)
}

func (p *Publisher) publishChange(ctx context.Context, userID, action, initiator string, temporary bool) error {
	c, ok := credentialChanges[action]
	if !ok {
		return nil
	}
	events := CredentialChange(p.now(), initiator, c[0], c[1])
	if name := friendlyNames[action]; name != "" {
		events[EventCredentialChange]["friendly_name"] = name
	}
	if err := p.publishOne(ctx, userID, EventCredentialChange, events); err != nil {
		return err
	}
	if temporary {
		return p.publishOne(ctx, userID, EventAccountCredentialChangeRequired, AccountCredentialChangeRequired())
	}
	return nil
}

func (p *Publisher) publishOne(ctx context.Context, userID, event string, events map[string]map[string]any) error {
	_, err := p.Publish(ctx, p.now(), event, func(About) map[string]map[string]any { return events }, []About{{UserID: userID}}, "")
	return err
}

func (p *Publisher) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}
