package ssf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idp/idp/internal/netguard"
)

// pushResult is what one push attempt (RFC 8935 §2) came to.
type pushResult struct {
	delivered  bool
	retry      bool // unreachable, 5xx or 429: worth trying again
	retryAfter time.Duration
	err        string // why not, without the token
}

// maxAnswer is how much of a receiver's answer is read.
const maxAnswer = 8 << 10

// push POSTs token to endpoint as RFC 8935 says: the SET as the body,
// application/secevent+jwt, the stream's authorization header if it has
// one. 202 is delivered. 400 is the receiver's refusal, with err and
// description in JSON (§2.3): not retried, kept for an administrator to
// see. 5xx, 429 and a network failure are retried.
func push(ctx context.Context, client *http.Client, endpoint, authorization, token string, now time.Time) pushResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(token))
	if err != nil {
		return pushResult{err: "invalid push endpoint"}
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(req)
	if errors.Is(err, netguard.ErrInternal) {
		return pushResult{err: "refused: the push endpoint is on this host or a private network (IDP_ALLOW_PRIVATE_BACKCHANNEL is not set)"}
	}
	if err != nil {
		return pushResult{retry: true, err: redact(err.Error(), token)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer)) //nolint:errcheck // for the connection's reuse

	status := resp.StatusCode
	if status == http.StatusAccepted {
		return pushResult{delivered: true}
	}
	r := pushResult{err: "HTTP " + strconv.Itoa(status)}
	if status == http.StatusTooManyRequests || status >= 500 {
		r.retry = true
		r.retryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	var refusal struct {
		Err         string `json:"err"`
		Description string `json:"description"`
	}
	if json.Unmarshal(bytes.TrimSpace(answer), &refusal) == nil && refusal.Err != "" {
		r.err += ": " + refusal.Err
		if refusal.Description != "" {
			r.err += ": " + refusal.Description
		}
	}
	r.err = redact(r.err, token)
	return r
}

func retryAfter(v string, now time.Time) time.Duration {
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redact keeps the token out of an error message, and the message short
// and storable.
func redact(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[set]")
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > 300 {
		cut := 300
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}
