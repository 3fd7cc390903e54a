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
	v := m.CookieValue(r)
	if v == "" {
		return ""
	}
	mac := hmac.New(sha256.New, m.CSRFKey)
	mac.Write([]byte("csrf:" + v))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// CheckCSRF reports whether the posted csrf_token belongs to this browser's
// session (constant-time).
func (m *Manager) CheckCSRF(r *http.Request) bool {
	want := m.CSRFToken(r)
	got := r.PostFormValue("csrf_token")
	return want != "" && hmac.Equal([]byte(got), []byte(want))
}
