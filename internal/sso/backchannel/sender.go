package backchannel

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/outbox"
	"github.com/idp/idp/internal/sso/keys"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTimeout bounds one notification's POST when Sender.HTTP has none.
const DefaultTimeout = 5 * time.Second

// Sender delivers back-channel logout notifications: for each outbox row
// of kind sessions.LogoutKind it signs a fresh logout token and POSTs it to the app.
// Delivery is at least once: an app may, rarely, receive a notification
// twice (the outbox's Worker retries an attempt whose outcome it could not
// record).
type Sender struct {
	// Pool looks up the signing alg of rows the previous release queued,
	// which carry none.
	Pool   *pgxpool.Pool
	Keys   *keys.Set
	Issuer string
	// HTTP sends the notifications. It is copied, never mutated; the copy
	// never follows redirects (spec §2.5) and times out after DefaultTimeout
	// when HTTP.Timeout is zero.
	HTTP *http.Client
	// AllowPrivate lets deliveries reach this host, private networks and
	// link-local addresses (IDP_ALLOW_PRIVATE_BACKCHANNEL). Otherwise
	// every address dialled is checked once DNS has resolved it
	// (netguard.Control) and a refused one fails the notification;
	// deliveries then connect directly, not through HTTP(S)_PROXY.
	AllowPrivate bool
	// Concurrency is how many deliveries may run at once (the Worker's),
	// so that as many idle connections to one app are kept.
	Concurrency int
	// Now is the clock for the token's iat (time.Now when nil).
	Now func() time.Time
	// GiveUpAfter is how long after the session ended a notification is
	// retried before it is abandoned (outbox.DefaultGiveUpAfter).
	GiveUpAfter time.Duration
}

// Kind is the outbox kind that delivers through s.
func (s Sender) Kind() (outbox.Kind, error) {
	if s.Keys == nil || s.Issuer == "" {
		return outbox.Kind{}, errors.New("backchannel: sender: Keys and Issuer are required")
	}
	client, err := netguard.DeliveryClient(s.HTTP, DefaultTimeout, cmp.Or(s.Concurrency, outbox.DefaultConcurrency), s.AllowPrivate)
	if err != nil {
		return outbox.Kind{}, fmt.Errorf("backchannel: sender: %w", err)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	d := delivery{Sender: s, http: client}
	return outbox.Kind{Send: d.send, Timeout: client.Timeout, GiveUpAfter: s.GiveUpAfter, Log: "backchannel logout"}, nil
}

// delivery is a Sender with its HTTP client made.
type delivery struct {
	Sender
	http *http.Client
}

// send makes one attempt at a claimed row. Its error never holds the token.
func (d delivery) send(ctx context.Context, j outbox.Job) outbox.Result {
	o, status, retryAfter, lastErr, jti := d.attempt(ctx, j, d.Now())
	r := outbox.Result{Outcome: o, RetryAfter: retryAfter, Error: lastErr}
	if jti != "" {
		r.Attrs = append(r.Attrs, slog.String("jti", jti))
	}
	if status != 0 {
		r.Attrs = append(r.Attrs, slog.Int("status", status))
	}
	return r
}

// maxBody is how much of a response is read: enough for an error message
// and a token the relying party might echo, which must be redacted whole.
const maxBody = 8 << 10

// alg is the algorithm to sign j's token with.
func (d delivery) alg(ctx context.Context, j outbox.Job) (string, error) {
	var p struct {
		Alg *string `json:"alg"`
	}
	if err := json.Unmarshal(j.Payload, &p); err != nil || p.Alg == nil {
		var alg string
		if d.Pool == nil {
			return keys.RS256, nil
		}
		err := d.Pool.QueryRow(ctx, `SELECT id_token_signed_response_alg FROM oauth_clients WHERE id = $1`, j.ClientID).Scan(&alg)
		if errors.Is(err, pgx.ErrNoRows) {
			return keys.RS256, nil
		}
		if err != nil {
			return "", fmt.Errorf("backchannel: the client's alg: %w", err)
		}
		return cmp.Or(alg, keys.RS256), nil
	}
	return cmp.Or(*p.Alg, keys.RS256), nil
}

// attempt signs a fresh token and POSTs it. lastErr never holds the token.
func (d delivery) attempt(ctx context.Context, j outbox.Job, now time.Time) (o outbox.Outcome, status int, retryAfter time.Duration, lastErr, jti string) {
	u, err := url.Parse(j.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return outbox.Failed, 0, 0, "invalid backchannel_logout_uri", ""
	}
	alg, err := d.alg(ctx, j)
	if err != nil {
		return outbox.Retrying, 0, 0, err.Error(), ""
	}
	token, jti, err := SignLogoutToken(d.Keys, alg, d.Issuer, j.ClientID, j.Subject, j.SID, j.IncludeSID, now)
	if errors.Is(err, ErrInvalidToken) || errors.Is(err, keys.ErrUnsupportedAlg) {
		// The row or the client's registration is wrong: retrying cannot
		// help until someone fixes it and calls Retry.
		return outbox.Failed, 0, 0, err.Error(), ""
	}
	if err != nil {
		// Our side, say a rotated key this instance has not reloaded yet:
		// worth retrying.
		return outbox.Retrying, 0, 0, err.Error(), ""
	}
	body := url.Values{"logout_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return outbox.Failed, 0, 0, redact(err.Error(), token), jti
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := d.http.Do(req)
	if errors.Is(err, netguard.ErrInternal) {
		// The operator's policy, not a passing fault: retrying cannot help.
		return outbox.Failed, 0, 0, "refused: the back-channel logout URI's host is on this host, a private network or a link-local address" +
			" (IDP_ALLOW_PRIVATE_BACKCHANNEL is not set)", jti
	}
	if err != nil {
		return outbox.Retrying, 0, 0, redact(err.Error(), token), jti
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	// Drain a little more so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) //nolint:errcheck

	status = resp.StatusCode
	switch {
	case status == http.StatusOK || status == http.StatusNoContent:
		return outbox.Delivered, status, 0, "", jti
	case status == http.StatusTooManyRequests || status >= 500:
		o = outbox.Retrying
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	default:
		o = outbox.Failed
	}
	lastErr = "HTTP " + strconv.Itoa(status)
	if msg := excerpt(answer, resp.Header.Get("Content-Type"), token); msg != "" {
		lastErr += ": " + msg
	}
	return o, status, retryAfter, lastErr, jti
}

// parseRetryAfter reads delta-seconds or an HTTP date; zero if absent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// jwtLike matches anything that looks like a JWT or a piece of one: a
// relying party may echo (part of) the token in its error page.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]*){0,2}`)

// maxLastError is how many bytes of a message last_error keeps.
const maxLastError = 200

// redact removes the token and anything token-like from s, makes it valid
// UTF-8 text PostgreSQL will store, and cuts it to maxLastError bytes.
func redact(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[logout_token]")
	}
	s = jwtLike.ReplaceAllString(s, "[jwt]")
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	s = strings.TrimSpace(s)
	if len(s) > maxLastError {
		cut := maxLastError
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
