package sessions

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// CSRFToken returns the anti-forgery token for forms of the signed-in
// browser: an HMAC of its session cookie, so it needs no storage, changes
// with every new sign-in, and cannot be computed by another site.
func (m *Manager) CSRFToken(r *http.Request) string {
	return csrfToken(m.CSRFKey, m.CookieValue(r))
}

func csrfToken(key []byte, cookie string) string {
	if cookie == "" {
		return ""
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("csrf:" + cookie))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// CheckCSRF reports whether the posted csrf_token belongs to this browser's
// session (constant-time), under the current key or a rotated one.
func (m *Manager) CheckCSRF(r *http.Request) bool {
	return m.checkToken(m.CookieValue(r), r.PostFormValue("csrf_token"))
}

// BoundCSRFToken is the anti-forgery token of a form shown without a
// sign-in (a mailed link's page): an HMAC of another cookie of the
// browser's (its value) and the form's purpose, so a token of one such
// form never passes for another's, nor for a session's. Empty when the
// cookie is.
func (m *Manager) BoundCSRFToken(purpose, cookie string) string {
	if cookie == "" {
		return ""
	}
	return csrfToken(m.CSRFKey, purpose+":"+cookie)
}

// CheckBoundCSRF reports whether got is BoundCSRFToken(purpose, cookie)
// under the current key or a rotated one (constant-time).
func (m *Manager) CheckBoundCSRF(purpose, cookie, got string) bool {
	if cookie == "" {
		return false
	}
	return m.checkToken(purpose+":"+cookie, got)
}

func (m *Manager) checkToken(bound, got string) bool {
	if bound == "" || got == "" {
		return false
	}
	ok := false
	for _, key := range append([][]byte{m.CSRFKey}, m.RotatedCSRFKeys...) {
		// Every key is tried, so the time taken does not say which matched.
		ok = hmac.Equal([]byte(got), []byte(csrfToken(key, bound))) || ok
	}
	return ok
}
