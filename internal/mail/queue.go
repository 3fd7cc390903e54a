package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	gomail "github.com/wneessen/go-mail"

	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/secrets"
)

// SecretPurpose derives the key that seals link tokens while their mail
// waits in the outbox (secrets.New).
const SecretPurpose = "mail-link-tokens"

// OutboxKind is the outbox row kind of a mail.
const OutboxKind = "mail"

// SendTimeout bounds one delivery attempt from the outbox; below the
// outbox worker's lease, so no second worker takes a row whose attempt
// is still running.
const SendTimeout = 20 * time.Second

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

// Mailer queues mail on the outbox and delivers it from there.
type Mailer struct {
	Pool   *pgxpool.Pool
	Brand  Brand
	Issuer string
	Box    *secrets.Box
	Sender *Sender
	Now    func() time.Time
}

// Queue puts the mail for a on the outbox, in the unit of work in ctx, so
// it is sent if and only if the change that causes it commits, and at
// least once however the instances restart. a.Issuer is ignored: the
// delivering instance's is used. subject names whose mail it is (a user
// id) in the outbox row.
func (m *Mailer) Queue(ctx context.Context, subject string, a Action) error {
	if _, ok := kinds[a.Kind]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, a.Kind)
	}
	now := m.Now()
	j := Job{Kind: a.Kind, To: a.To, Name: a.Name, Path: a.Path}
	if a.Expires > 0 {
		// A notice without a link to expire (a.Expires zero) never
		// expires in the outbox.
		j.ExpiresAt = now.Add(a.Expires)
	}
	if a.Token != "" {
		j.SealedToken = m.Box.Seal([]byte(a.Token), j.aad())
	}
	return outbox.Queue(ctx, m.Pool, now, outbox.Message{Kind: OutboxKind, Subject: subject, Payload: j})
}

// ErrExpired: the job's link expired before it could be delivered; it
// is dropped rather than sent with a dead link.
var ErrExpired = errors.New("mail: the link expired before delivery")

// ErrBadJob: the payload cannot be read or its token opened (a server
// secret that was dropped from IDP_SECRET): retrying will not help.
var ErrBadJob = errors.New("mail: unreadable job")

// Deliver renders and sends one queued job. Permanent errors are final;
// any other is worth a retry.
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

// Permanent reports whether a delivery error will not go away by trying
// again: an expired or unreadable job, or a recipient the server refuses
// for good (a 5xx to RCPT TO). Connection failures, timeouts and 4xx
// answers are worth a retry.
func Permanent(err error) bool {
	if errors.Is(err, ErrExpired) || errors.Is(err, ErrBadJob) {
		return true
	}
	var se *gomail.SendError
	return errors.As(err, &se) && se.Reason == gomail.ErrSMTPRcptTo && !se.IsTemp()
}

// Kind is the outbox kind that delivers mail: each claimed row is one
// attempt; the outbox retries with backoff and gives up after an hour
// (a reset link is dead after 30 minutes anyway).
func (m *Mailer) Kind() outbox.Kind {
	return outbox.Kind{
		Timeout: SendTimeout, GiveUpAfter: time.Hour, Log: "mail",
		Send: func(ctx context.Context, j outbox.Job) outbox.Result {
			ctx, cancel := context.WithTimeout(ctx, SendTimeout)
			defer cancel()
			err := m.Deliver(ctx, j.Payload)
			switch {
			case err == nil:
				return outbox.Result{Outcome: outbox.Delivered}
			case Permanent(err):
				return outbox.Result{Outcome: outbox.Failed, Error: err.Error()}
			}
			// The error names the server and SMTP's answer, never the
			// password or the message.
			return outbox.Result{Outcome: outbox.Retrying, Error: err.Error(), Attrs: []slog.Attr{slog.String("smtp", m.Sender.Config.Host)}}
		},
	}
}
