// Package reqlimit bounds what a request may bring before any handler
// reads it: the size of its body and of its query string, and the kind of
// body (no multipart: nothing here takes files, and Go's multipart parser
// holds up to 32 MB in memory). A request over a limit is answered at
// once with a clear 4xx — the OAuth error format on the endpoints apps and
// scripts call, an HTML error page everywhere else — and reaches no
// handler, so nothing of it is stored.
//
// Without it every form handler would read up to the 10 MB that
// net/http's ParseForm allows, and fosite the 1 MB of its own.
package reqlimit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Defaults for the Limits' zero fields: far above anything a sign-in form,
// a token request or a WebAuthn ceremony sends, far below what would cost
// the provider memory.
const (
	DefaultMaxBody  = 32 << 10
	DefaultMaxQuery = 16 << 10
)

// Limits says how large a request may be and how a refusal looks.
type Limits struct {
	// MaxBody and MaxQuery are the most bytes a request body and a query
	// string may hold (DefaultMaxBody, DefaultMaxQuery).
	MaxBody  int64
	MaxQuery int
	// Larger raises MaxBody for the paths under each prefix: the few
	// routes that take something bigger than a form (a WebAuthn
	// credential).
	Larger map[string]int64
	// JSONPaths are path prefixes answered in the OAuth error format
	// (RFC 6749 §5.2): the token, introspection, revocation and userinfo
	// endpoints and the admin API. So is a request that asks for JSON
	// (Accept: application/json), as a page's script does.
	JSONPaths []string
	// Page renders a refusal as the HTML error page.
	Page func(w http.ResponseWriter, status int, message, hint string)
}

// Wrap returns mux with the limits in front of it. The request it passes
// on is the one it was given (its body replaced at most), so whatever
// wraps Wrap sees the route the mux records on it; a refused request is
// given its route too, for the access log and metrics.
func (l Limits) Wrap(mux *http.ServeMux) http.Handler {
	maxBody, maxQuery := l.MaxBody, l.MaxQuery
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if maxQuery <= 0 {
		maxQuery = DefaultMaxQuery
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse := func(status int, message, hint string) {
			_, r.Pattern = mux.Handler(r)
			// The rest of the body is not read: the connection cannot be
			// reused (net/http would read up to 256 KiB to try).
			w.Header().Set("Connection", "close")
			l.refuse(w, r, status, message, hint)
		}
		if len(r.URL.RawQuery) > maxQuery {
			refuse(http.StatusRequestURITooLong, fmt.Sprintf("The address is too long (more than %d bytes).", maxQuery),
				"Go back and try again. If you followed a link from an application, tell its owner.")
			return
		}
		limit := maxBody
		for prefix, n := range l.Larger {
			if strings.HasPrefix(r.URL.Path, prefix) && n > limit {
				limit = n
			}
		}
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			mux.ServeHTTP(w, r)
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") {
			refuse(http.StatusUnsupportedMediaType, "Forms must be sent as application/x-www-form-urlencoded; multipart bodies are not accepted.",
				"Go back and try again.")
			return
		}
		tooLarge := func() {
			refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("The request is too large (more than %d bytes).", limit),
				"Go back and try again with less.")
		}
		if r.ContentLength > limit {
			tooLarge() // declared too large: answered before a byte of it is read
			return
		}
		if r.ContentLength < 0 {
			// Chunked, of unknown size: read up to one byte past the limit
			// and answer as soon as that byte arrives.
			body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			switch {
			case int64(len(body)) > limit:
				tooLarge()
				return
			case err != nil:
				refuse(http.StatusBadRequest, "The request could not be read.", "Go back and try again.")
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		// A body of a declared size is never read past that size by
		// net/http; the reader only makes the bound explicit.
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		mux.ServeHTTP(w, r)
	})
}

func (l Limits) refuse(w http.ResponseWriter, r *http.Request, status int, message, hint string) {
	if l.wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": message}) //nolint:errcheck
		return
	}
	if l.Page == nil {
		http.Error(w, message, status)
		return
	}
	l.Page(w, status, message, hint)
}

// wantsJSON reports whether r is answered in the OAuth error format.
func (l Limits) wantsJSON(r *http.Request) bool {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		return true
	}
	for _, p := range l.JSONPaths {
		if strings.HasPrefix(r.URL.Path, p) {
			return true
		}
	}
	return false
}
