package receiver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
)

// ErrTransmitter means the transmitter could not be reached, or refused
// what we asked of its stream management API: nothing changed here.
var ErrTransmitter = errors.New("receiver: the transmitter")

// Delivery method URNs on the wire (SSF 1.0 §8.1.1).
const (
	urnPush = "urn:ietf:rfc:8935"
	urnPoll = "urn:ietf:rfc:8936"
)

// api is a transmitter's stream management API (SSF 1.0 §8.1), called
// with our credential there.
type api struct {
	client *http.Client
	config configuration
	token  string
}

// remoteStream is what we read of a stream configuration.
type remoteStream struct {
	StreamID string   `json:"stream_id"`
	Aud      audience `json:"aud"`
	Delivery struct {
		Method      string `json:"method"`
		EndpointURL string `json:"endpoint_url"`
	} `json:"delivery"`
}

func transmitterErr(format string, args ...any) error {
	return fmt.Errorf("%w %s", ErrTransmitter, fmt.Sprintf(format, args...))
}

func (s *Store) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return newClient(s.AllowPrivate)
}

// tokenConfig is the client-credentials grant of t with secret; nil for a
// static bearer token.
func tokenConfig(t Transmitter, secret string) *clientcredentials.Config {
	if t.ClientID == "" {
		return nil
	}
	return &clientcredentials.Config{ClientID: t.ClientID, ClientSecret: secret, TokenURL: t.TokenURL,
		Scopes: strings.Fields(t.TokenScope)}
}

// secret opens t's credential: its bearer token or client secret.
func (s *Store) secret(t Transmitter) (string, error) {
	if t.pollToken == nil {
		return "", fmt.Errorf("%w: transmitter %s has no credential for its API (it was added without one)", ErrInvalid, t.ID)
	}
	if s.Box == nil {
		return "", fmt.Errorf("receiver: the server secret is needed to open the transmitter's credential")
	}
	b, err := s.Box.Open(t.pollToken, []byte(t.ID))
	if err != nil {
		return "", fmt.Errorf("receiver: open the transmitter's credential (is IDP_SECRET the instances' one?): %w", err)
	}
	return string(b), nil
}

// api reads t's configuration and gets a token for its API.
func (s *Store) api(ctx context.Context, t Transmitter, secret string) (*api, error) {
	a := &api{client: s.client(), token: secret}
	if err := getJSON(ctx, a.client, t.ConfigURL, &a.config); err != nil {
		return nil, transmitterErr("configuration could not be read: %v", err)
	}
	if a.config.Issuer != t.Issuer {
		return nil, transmitterErr("configuration at %s names issuer %q, not %q", t.ConfigURL, a.config.Issuer, t.Issuer)
	}
	for what, u := range map[string]string{"configuration_endpoint": a.config.ConfigurationEndpoint,
		"verification_endpoint": a.config.VerificationEndpoint} {
		if u == "" {
			continue
		}
		if err := s.checkURL(what, u); err != nil {
			return nil, transmitterErr("configuration: %v", err)
		}
	}
	if cc := tokenConfig(t, secret); cc != nil {
		tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, a.client))
		if err != nil {
			return nil, transmitterErr("gave no token at %s: %v", t.TokenURL, err)
		}
		a.token = tok.AccessToken
	}
	return a, nil
}

// call sends a JSON request and decodes a JSON answer into out (if not
// nil) when the status is one of ok.
func (a *api) call(ctx context.Context, method, u string, body, out any, ok ...int) (int, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, transmitterErr("%s %s: %v", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, transmitterErr("could not be reached: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxDocument))
	for _, s := range ok {
		if resp.StatusCode == s {
			if out != nil && json.Unmarshal(raw, out) != nil {
				return s, transmitterErr("answered %s %s with what is not a stream configuration", method, u)
			}
			return s, nil
		}
	}
	return resp.StatusCode, transmitterErr("answered %s %s with HTTP %d%s", method, u, resp.StatusCode, problem(raw))
}

// problem is the error of an SSF error body, for a message.
func problem(raw []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		return ""
	}
	return fmt.Sprintf(" (%s: %s)", e.Error, shorten(e.Description, 200))
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// createStream creates t's stream at the transmitter, or, when it says we
// have one already (409: one stream per receiver, as ours), reads it and
// replaces its configuration with ours: an earlier add whose stream was
// left there is adopted, never duplicated.
func (a *api) createStream(ctx context.Context, t Transmitter, pushURL, header, description string) (remoteStream, error) {
	if a.config.ConfigurationEndpoint == "" {
		return remoteStream{}, transmitterErr("configuration has no configuration_endpoint: create the stream there by hand")
	}
	delivery := map[string]any{"method": urnPoll}
	if t.Delivery == DeliveryPush {
		delivery = map[string]any{"method": urnPush, "endpoint_url": pushURL, "authorization_header": header}
	}
	body := map[string]any{"delivery": delivery, "events_requested": t.Events, "description": description}
	var st remoteStream
	status, err := a.call(ctx, http.MethodPost, a.config.ConfigurationEndpoint, body, &st, http.StatusCreated, http.StatusOK)
	if status == http.StatusConflict {
		var existing json.RawMessage
		if _, err := a.call(ctx, http.MethodGet, a.config.ConfigurationEndpoint, nil, &existing, http.StatusOK); err != nil {
			return remoteStream{}, err
		}
		var list []remoteStream
		if json.Unmarshal(existing, &list) != nil {
			var one remoteStream
			if json.Unmarshal(existing, &one) == nil && one.StreamID != "" {
				list = []remoteStream{one}
			}
		}
		if len(list) != 1 || list[0].StreamID == "" {
			return remoteStream{}, transmitterErr("refused a new stream (409) and lists %d of ours: delete them there first", len(list))
		}
		body["stream_id"] = list[0].StreamID
		st = remoteStream{}
		_, err = a.call(ctx, http.MethodPut, a.config.ConfigurationEndpoint, body, &st, http.StatusOK)
	}
	if err != nil {
		return remoteStream{}, err
	}
	if st.StreamID == "" {
		return remoteStream{}, transmitterErr("created a stream without a stream_id")
	}
	return st, nil
}

func (a *api) deleteStream(ctx context.Context, streamID string) error {
	if a.config.ConfigurationEndpoint == "" {
		return transmitterErr("configuration has no configuration_endpoint")
	}
	_, err := a.call(ctx, http.MethodDelete, a.config.ConfigurationEndpoint+"?stream_id="+url.QueryEscape(streamID), nil, nil,
		http.StatusNoContent, http.StatusOK, http.StatusNotFound)
	return err
}

// pushURL is our push endpoint for transmitter id.
func (s *Store) pushURL(id string) (string, error) {
	if s.Issuer == "" {
		return "", fmt.Errorf("%w: this provider's issuer (IDP_ISSUER) is needed to name our push endpoint", ErrInvalid)
	}
	return strings.TrimSuffix(s.Issuer, "/") + PathReceive + id, nil
}

// DeleteStream deletes t's stream at the transmitter, if we know it: a
// transmitter we stop trusting should stop sending. The caller removes t
// whatever the answer.
func (s *Store) DeleteStream(ctx context.Context, t Transmitter) error {
	if t.StreamID == "" {
		return nil
	}
	secret, err := s.secret(t)
	if err != nil {
		return err
	}
	a, err := s.api(ctx, t, secret)
	if err != nil {
		return err
	}
	return a.deleteStream(ctx, t.StreamID)
}

// RequestVerification asks the transmitter to send a verification event
// (SSF 1.0 §8.1.4) echoing a new random state, which is remembered as
// its hash; the event, by push or poll, marks t verified (Receiver.Handle).
// The state is committed before the request, so the event can arrive at
// any instance at once; a refused request puts back what was there.
func (s *Store) RequestVerification(ctx context.Context, id string) error {
	t, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if t.StreamID == "" {
		return fmt.Errorf("%w: transmitter %s has no stream we created, so no stream id to verify", ErrInvalid, t.ID)
	}
	secret, err := s.secret(t)
	if err != nil {
		return err
	}
	a, err := s.api(ctx, t, secret)
	if err != nil {
		return err
	}
	if a.config.VerificationEndpoint == "" {
		return transmitterErr("configuration has no verification_endpoint")
	}
	state := rand.Text()
	h := sha256.Sum256([]byte(state))
	now := s.now()
	if _, err := s.Pool.Exec(ctx, `UPDATE ssf_transmitters SET verify_state_hash = $2, verify_requested_at = $3 WHERE id = $1`,
		t.ID, h[:], now); err != nil {
		return fmt.Errorf("receiver: verify: %w", err)
	}
	if _, err := a.call(ctx, http.MethodPost, a.config.VerificationEndpoint, map[string]string{"stream_id": t.StreamID, "state": state},
		nil, http.StatusNoContent, http.StatusOK, http.StatusAccepted); err != nil {
		// Unless the event came meanwhile (it cannot have, the request
		// failed, but the row says so), what was there comes back.
		_, _ = s.Pool.Exec(ctx, `UPDATE ssf_transmitters SET verify_state_hash = $2, verify_requested_at = $3
			WHERE id = $1 AND verify_state_hash = $4`, t.ID, t.verifyHash, nullTime(t.VerifyRequested), h[:])
		return err
	}
	err = db.Tx(ctx, s.Pool, func(ctx context.Context) error {
		return audit.Record(ctx, now, audit.CLI, "ssf.transmitter_verify", "transmitter:"+t.ID, map[string]any{"stream_id": t.StreamID})
	})
	if err != nil {
		return fmt.Errorf("receiver: verify: %w", err)
	}
	return nil
}
