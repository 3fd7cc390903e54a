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
	cookie := m.CookieValue(r)
	got := []byte(r.PostFormValue("csrf_token"))
	if cookie == "" || len(got) == 0 {
		return false
	}
	ok := false
	for _, key := range append([][]byte{m.CSRFKey}, m.RotatedCSRFKeys...) {
		// Every key is tried, so the time taken does not say which matched.
		ok = hmac.Equal(got, []byte(csrfToken(key, cookie))) || ok
	}
	return ok
}
