package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/idp/idp/internal/secrets"
)

// SecretPurpose derives the key that seals link tokens while their mail
// waits in the outbox (secrets.New).
const SecretPurpose = "mail-link-tokens"

// OutboxKind is the outbox row kind of a mail.
const OutboxKind = "mail"

// Job is a mail as it waits in the outbox: what is needed to render it
// again at delivery, with the link's token sealed under the server secret
// (and bound to the recipient and the link's path), so the outbox never
// holds a link that works. The issuer and the brand come from the
// configuration of the instance that delivers it.
type Job struct {
	Kind        string    `json:"kind"`
	To          string    `json:"to"`
	Name        string    `json:"name,omitempty"`
	Path        string    `json:"path"`
	SealedToken []byte    `json:"sealed_token,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (j Job) aad() []byte { return []byte("mail\x00" + j.Kind + "\x00" + j.To + "\x00" + j.Path) }

// Mailer turns actions into outbox jobs and jobs into delivered mail.
type Mailer struct {
	Brand  Brand
	Issuer string
	Box    *secrets.Box
	Sender *Sender
	// Enqueue writes a job's payload to the outbox in the unit of work in
	// ctx (outbox.Queue with kind OutboxKind), so the mail is sent if and
	// only if the change that causes it commits.
	Enqueue func(ctx context.Context, payload []byte) error
	Now     func() time.Time
}

// Queue puts the mail for a on the outbox, in the caller's transaction.
// a.Issuer is ignored: the delivering instance's issuer is used.
func (m *Mailer) Queue(ctx context.Context, a Action) error {
	if _, ok := kinds[a.Kind]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, a.Kind)
	}
	j := Job{Kind: a.Kind, To: a.To, Name: a.Name, Path: a.Path, ExpiresAt: m.Now().Add(a.Expires)}
	if a.Token != "" {
		j.SealedToken = m.Box.Seal([]byte(a.Token), j.aad())
	}
	payload, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("mail: queue: %w", err)
	}
	if err := m.Enqueue(ctx, payload); err != nil {
		return fmt.Errorf("mail: queue: %w", err)
	}
	return nil
}

// ErrExpired: the job's link expired before it could be delivered; it
// is dropped rather than sent with a dead link.
var ErrExpired = errors.New("mail: the link expired before delivery")

// ErrBadJob: the payload cannot be read or its token opened (a server
// secret that was dropped from IDP_SECRET): retrying will not help.
var ErrBadJob = errors.New("mail: unreadable job")

// Deliver renders and sends one queued job. ErrExpired and ErrBadJob
// are final; any other error is worth a retry.
func (m *Mailer) Deliver(ctx context.Context, payload []byte) error {
	var j Job
	if err := json.Unmarshal(payload, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrBadJob, err)
	}
	if !j.ExpiresAt.IsZero() && !m.Now().Before(j.ExpiresAt) {
		return ErrExpired
	}
	var token string
	if j.SealedToken != nil {
		b, err := m.Box.Open(j.SealedToken, j.aad())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadJob, err)
		}
		token = string(b)
	}
	msg, err := Render(m.Brand, Action{Kind: j.Kind, To: j.To, Name: j.Name, Issuer: m.Issuer, Path: j.Path,
		Token: token, Expires: j.ExpiresAt.Sub(m.Now()).Round(time.Minute)})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadJob, err)
	}
	return m.Sender.Send(ctx, msg)
}
