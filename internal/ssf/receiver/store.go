// Package receiver owns the provider's side of the OpenID Shared Signals
// Framework 1.0 as a receiver: the transmitters an operator trusts, the
// verification of every Security Event Token they send (signature against
// the transmitter's published JWKS, typ, iss, aud, iat window, jti once),
// and what the provider does about an event: a session revoked, a
// credential changed, an account disabled or a device out of compliance
// elsewhere ends the person's sessions here, through the one revocation
// path (sessions.Manager.Revoke), so every app hears of it by back-channel
// logout and every stream of ours by SSF.
//
// SETs arrive by push (RFC 8935, at /ssf/receive/{transmitter id}) or are
// fetched by polling the transmitter (RFC 8936, Poller). Unknown subjects
// and events are acknowledged and recorded in the audit log, never acted
// on.
package receiver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/ssf"
)

// SecretPurpose is the secrets.Box purpose of the poll tokens.
const SecretPurpose = "ssf-transmitter-tokens"

// Event types the receiver acts on.
const (
	EventSessionRevoked         = ssf.EventSessionRevoked
	EventCredentialChange       = ssf.EventCredentialChange
	EventAccountDisabled        = ssf.EventAccountDisabled
	EventDeviceComplianceChange = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
)

// EventsActedOn are the events a transmitter may be allowed to send, by
// their short names (the last segment of the URI).
func EventsActedOn() []string {
	return []string{EventSessionRevoked, EventCredentialChange, EventAccountDisabled, EventDeviceComplianceChange}
}

// Delivery methods of a transmitter.
const (
	DeliveryPush = "push"
	DeliveryPoll = "poll"
)

// Subject mappings: how a SET's sub_id names one of our users.
const (
	SubjectsEmail  = "email"   // an email subject, matched to the account's email
	SubjectsIssSub = "iss_sub" // an iss_sub with our issuer, sub our user id
)

// Errors.
var (
	ErrInvalid  = errors.New("receiver: invalid transmitter")
	ErrNotFound = errors.New("receiver: no such transmitter")
	ErrExists   = errors.New("receiver: a transmitter with this issuer is already registered")
)

// Transmitter is one trusted transmitter.
type Transmitter struct {
	ID        string   `json:"id"`
	Issuer    string   `json:"issuer"`
	ConfigURL string   `json:"config_url"`
	Audience  string   `json:"audience,omitempty"`
	Events    []string `json:"events"`
	Subjects  []string `json:"subjects"`
	Delivery  string   `json:"delivery"`
	PollURL   string   `json:"poll_url,omitempty"`
	// ClientID, TokenURL and TokenScope: tokens for the transmitter's API
	// (polling, its stream) come from the client-credentials grant (the
	// secret is sealed).
	ClientID   string `json:"client_id,omitempty"`
	TokenURL   string `json:"token_url,omitempty"`
	TokenScope string `json:"token_scope,omitempty"`
	// StreamID is the stream we created there ("" for one made by hand).
	StreamID string `json:"stream_id,omitempty"`
	// VerifyRequested is when we last asked for a verification event,
	// VerifiedAt when one last echoed our state.
	VerifyRequested time.Time `json:"verification_requested_at,omitzero"`
	VerifiedAt      time.Time `json:"verified_at,omitzero"`
	// StreamStatus and StreamReason are what the transmitter's last
	// stream-updated event said of our stream, at StreamUpdated (its iat).
	StreamStatus  string    `json:"stream_status,omitempty"`
	StreamReason  string    `json:"stream_reason,omitempty"`
	StreamUpdated time.Time `json:"stream_updated_at,omitzero"`
	LastPoll      time.Time `json:"last_poll_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`

	pollToken  []byte // the sealed credential for its API
	pushHash   []byte
	verifyHash []byte // of the state of the verification request in flight
}

// New is what an operator registers.
type New struct {
	Issuer    string
	ConfigURL string // default: Issuer + /.well-known/ssf-configuration
	Audience  string // an aud accepted besides our issuer (the client id the transmitter knows us by)
	Events    []string
	Subjects  []string
	// CreateStream (DeliveryPush or DeliveryPoll) has Add create the
	// stream at the transmitter, with Token or the client credential;
	// empty, the operator creates it there.
	CreateStream string
	PollURL      string // with Token, or ClientID: poll the stream the operator created
	// Token is a bearer token for the transmitter's API.
	Token string
	// ClientID, ClientSecret, TokenURL, TokenScope: get the token with the
	// client-credentials grant instead (it is refreshed when it expires).
	ClientID, ClientSecret, TokenURL, TokenScope string
}

// Store keeps the transmitters.
type Store struct {
	Pool         *pgxpool.Pool
	Box          *secrets.Box // nil: transmitters with a credential can be neither added nor polled
	AllowPrivate bool
	Issuer       string       // ours: our push endpoints are under it
	Client       *http.Client // for the transmitters' APIs; nil: one like Verifier's
	Now          func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// checkURL accepts an https URL (http for loopback), not internal unless
// allowed: the provider will fetch it.
func (s *Store) checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: %s must be an absolute https URL", ErrInvalid, what)
	}
	internal := netguard.InternalHost(u.Hostname())
	if u.Scheme == "http" && !(internal && s.AllowPrivate) {
		return fmt.Errorf("%w: %s must use https", ErrInvalid, what)
	}
	if internal && !s.AllowPrivate {
		return fmt.Errorf("%w: %s is on this host or a private network (IDP_ALLOW_PRIVATE_BACKCHANNEL is not set)", ErrInvalid, what)
	}
	return nil
}

// NormalizeEvent accepts a full event URI or its short name.
func NormalizeEvent(e string) (string, bool) {
	for _, k := range EventsActedOn() {
		if e == k || e == k[strings.LastIndex(k, "/")+1:] {
			return k, true
		}
	}
	return "", false
}

// Add registers a transmitter. With CreateStream and a credential there,
// it creates the stream at the transmitter first (SSF 1.0 §8.1.1.1): an
// unreachable or refusing transmitter is an ErrTransmitter and nothing is
// stored. Otherwise the operator has made the stream: with a poll URL and
// a credential it is polled; without, it pushes, and Add returns the
// Authorization header it must send (shown once: only its hash is kept).
func (s *Store) Add(ctx context.Context, n New) (Transmitter, string, error) {
	n.Issuer = strings.TrimSpace(n.Issuer)
	if err := s.checkURL("issuer", n.Issuer); err != nil {
		return Transmitter{}, "", err
	}
	if n.ConfigURL == "" {
		n.ConfigURL = strings.TrimSuffix(n.Issuer, "/") + ssf.PathConfiguration
	}
	if err := s.checkURL("configuration URL", n.ConfigURL); err != nil {
		return Transmitter{}, "", err
	}
	if len(n.Events) == 0 {
		n.Events = EventsActedOn()
	}
	var events []string
	for _, e := range n.Events {
		k, ok := NormalizeEvent(strings.TrimSpace(e))
		if !ok {
			return Transmitter{}, "", fmt.Errorf("%w: event %q is not one of session-revoked, credential-change, account-disabled, device-compliance-change", ErrInvalid, e)
		}
		if !slices.Contains(events, k) {
			events = append(events, k)
		}
	}
	if len(n.Subjects) == 0 {
		return Transmitter{}, "", fmt.Errorf("%w: name how subjects map to users: email, iss_sub or both", ErrInvalid)
	}
	var subjects []string
	for _, m := range n.Subjects {
		m = strings.TrimSpace(m)
		if m != SubjectsEmail && m != SubjectsIssSub {
			return Transmitter{}, "", fmt.Errorf("%w: subjects %q is not email or iss_sub", ErrInvalid, m)
		}
		if !slices.Contains(subjects, m) {
			subjects = append(subjects, m)
		}
	}
	t := Transmitter{ID: "tx_" + strings.ToLower(rand.Text()[:16]), Issuer: n.Issuer, ConfigURL: n.ConfigURL,
		Audience: n.Audience, Events: events, Subjects: subjects, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	secret := n.Token
	if n.ClientID != "" {
		if n.ClientSecret == "" {
			return Transmitter{}, "", fmt.Errorf("%w: a client id needs its client secret", ErrInvalid)
		}
		if err := s.checkURL("token URL", n.TokenURL); err != nil {
			return Transmitter{}, "", err
		}
		secret, t.ClientID, t.TokenURL, t.TokenScope = n.ClientSecret, n.ClientID, n.TokenURL, n.TokenScope
	}
	var header, pushURL string
	switch {
	case n.Token != "" && n.ClientID != "":
		return Transmitter{}, "", fmt.Errorf("%w: a token or a client credential, not both", ErrInvalid)
	case n.CreateStream != "" && secret == "":
		return Transmitter{}, "", fmt.Errorf("%w: creating the stream at the transmitter needs a token or a client credential there", ErrInvalid)
	case n.CreateStream != "" && n.PollURL != "":
		return Transmitter{}, "", fmt.Errorf("%w: the poll URL of a stream we create is the transmitter's to say", ErrInvalid)
	case n.CreateStream == DeliveryPoll:
		t.Delivery = DeliveryPoll
	case n.CreateStream == DeliveryPush, n.CreateStream == "" && n.PollURL == "" && secret == "":
		t.Delivery = DeliveryPush
		header = "Bearer " + rand.Text() + rand.Text()
		h := sha256.Sum256([]byte(header))
		t.pushHash = h[:]
		if n.CreateStream != "" {
			var err error
			if pushURL, err = s.pushURL(t.ID); err != nil {
				return Transmitter{}, "", err
			}
		}
	case n.CreateStream != "":
		return Transmitter{}, "", fmt.Errorf("%w: a stream is created for push or poll delivery, not %q", ErrInvalid, n.CreateStream)
	case n.PollURL == "":
		return Transmitter{}, "", fmt.Errorf("%w: a token or client credential is for polling (a poll URL) or for creating the stream", ErrInvalid)
	case secret == "":
		return Transmitter{}, "", fmt.Errorf("%w: a poll URL needs the token or a client credential", ErrInvalid)
	default:
		if err := s.checkURL("poll URL", n.PollURL); err != nil {
			return Transmitter{}, "", err
		}
		t.Delivery, t.PollURL = DeliveryPoll, n.PollURL
	}
	if secret != "" {
		if s.Box == nil {
			return Transmitter{}, "", fmt.Errorf("receiver: add: the server secret is needed to seal the transmitter credential")
		}
		t.pollToken = s.Box.Seal([]byte(secret), []byte(t.ID))
	}
	var remote *api
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		// Now, not queued: the issuer's row is claimed before the
		// transmitter is asked for a stream, so two adds of one issuer
		// never both create one (the second waits, then is refused).
		_, err := u.Exec(ctx, `INSERT INTO ssf_transmitters (id, issuer, config_url, audience, events, subjects, delivery, poll_url,
			poll_token_encrypted, push_auth_hash, created_at, client_id, token_url, token_scope)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
			t.ID, t.Issuer, t.ConfigURL, t.Audience, t.Events, t.Subjects, t.Delivery, t.PollURL, t.pollToken, t.pushHash, t.CreatedAt,
			t.ClientID, t.TokenURL, t.TokenScope)
		if db.IsUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		if n.CreateStream != "" {
			if remote, err = s.api(ctx, t, secret); err != nil {
				return err
			}
			st, err := remote.createStream(ctx, t, pushURL, header, strings.TrimSpace("idp receiver "+s.Issuer))
			if err != nil {
				remote = nil
				return err
			}
			if err := s.adopt(&t, st); err != nil {
				return err
			}
			u.Queue(`UPDATE ssf_transmitters SET stream_id = $2, poll_url = $3, audience = $4 WHERE id = $1`,
				t.ID, t.StreamID, t.PollURL, t.Audience)
		}
		return audit.Record(ctx, t.CreatedAt, audit.CLI, "ssf.transmitter_add", "transmitter:"+t.ID,
			map[string]any{"issuer": t.Issuer, "delivery": t.Delivery, "events": t.Events, "stream_id": t.StreamID})
	})
	if err != nil && remote != nil && t.StreamID != "" {
		// Created there, forgotten here: best effort not to leave it.
		_ = remote.deleteStream(context.WithoutCancel(ctx), t.StreamID)
	}
	switch {
	case errors.Is(err, ErrExists):
		return Transmitter{}, "", ErrExists
	case errors.Is(err, ErrTransmitter), errors.Is(err, ErrInvalid):
		return Transmitter{}, "", err
	case err != nil:
		return Transmitter{}, "", fmt.Errorf("receiver: add: %w", err)
	}
	if n.CreateStream != "" {
		header = "" // given to the transmitter; nobody else needs it
	}
	return t, header, nil
}

// adopt takes from the stream the transmitter made what we need: its id,
// its poll endpoint, and the aud its SETs will carry (unless the operator
// named one).
func (s *Store) adopt(t *Transmitter, st remoteStream) error {
	t.StreamID = st.StreamID
	if t.Delivery == DeliveryPoll {
		if err := s.checkURL("the stream's poll endpoint_url", st.Delivery.EndpointURL); err != nil {
			return fmt.Errorf("%w: %v", ErrTransmitter, err)
		}
		t.PollURL = st.Delivery.EndpointURL
	}
	if t.Audience == "" && len(st.Aud) == 1 && st.Aud[0] != s.Issuer {
		t.Audience = st.Aud[0]
	}
	return nil
}

const columns = `id, issuer, config_url, audience, events, subjects, delivery, poll_url, last_poll_at, last_error, created_at,
	poll_token_encrypted, push_auth_hash, client_id, token_url, token_scope, stream_id, verify_state_hash, verify_requested_at,
	verified_at, stream_status, stream_reason, stream_updated_at`

func scan(row pgx.Row) (Transmitter, error) {
	var t Transmitter
	var last, requested, verified, updated *time.Time
	err := row.Scan(&t.ID, &t.Issuer, &t.ConfigURL, &t.Audience, &t.Events, &t.Subjects, &t.Delivery, &t.PollURL,
		&last, &t.LastError, &t.CreatedAt, &t.pollToken, &t.pushHash, &t.ClientID, &t.TokenURL, &t.TokenScope,
		&t.StreamID, &t.verifyHash, &requested, &verified, &t.StreamStatus, &t.StreamReason, &updated)
	for _, p := range []struct {
		from *time.Time
		to   *time.Time
	}{{last, &t.LastPoll}, {requested, &t.VerifyRequested}, {verified, &t.VerifiedAt}, {updated, &t.StreamUpdated}} {
		if p.from != nil {
			*p.to = *p.from
		}
	}
	return t, err
}

// List returns every transmitter, oldest first.
func (s *Store) List(ctx context.Context) ([]Transmitter, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+columns+` FROM ssf_transmitters ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("receiver: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transmitter, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("receiver: list: %w", err)
	}
	return out, nil
}

// Get returns one transmitter.
func (s *Store) Get(ctx context.Context, id string) (Transmitter, error) {
	t, err := scan(s.Pool.QueryRow(ctx, `SELECT `+columns+` FROM ssf_transmitters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Transmitter{}, ErrNotFound
	}
	if err != nil {
		return Transmitter{}, fmt.Errorf("receiver: get: %w", err)
	}
	return t, nil
}

// Remove forgets a transmitter: what it sends from now on is refused.
func (s *Store) Remove(ctx context.Context, id string) error {
	err := db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		u, _ := db.From(ctx)
		// Now, not queued: a queued statement goes out with the COMMIT, and
		// the audit entry of a removal that removed nothing would commit.
		tag, err := u.Exec(ctx, `DELETE FROM ssf_transmitters WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return audit.Record(ctx, s.now(), audit.CLI, "ssf.transmitter_remove", "transmitter:"+id, nil)
	})
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("receiver: remove: %w", err)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
