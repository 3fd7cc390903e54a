package sessions

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestManager_CSRF: a form's token is bound to the session cookie and
// checked under the current key or a rotated one, never another.
func TestManager_CSRF(t *testing.T) {
	m, _, user := newManager(t, false)
	w := httptest.NewRecorder()
	create(t, m, w, NewSession{UserID: user, AuthTime: m.Now(), AMR: []string{AMRPassword}, ACR: ACRPassword})
	cookie := m.CookieValue(request(w))
	post := func(token string) bool {
		t.Helper()
		r := httptest.NewRequest("POST", "/", strings.NewReader(url.Values{"csrf_token": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range w.Result().Cookies() {
			r.AddCookie(c)
		}
		return m.CheckCSRF(r)
	}
	old, current, other := []byte("old key"), []byte("current key"), []byte("another key")
	m.CSRFKey, m.RotatedCSRFKeys = current, [][]byte{old}

	cases := []struct {
		name  string
		token string
		want  bool
	}{
		{"current key", csrfToken(current, cookie), true},
		{"rotated key", csrfToken(old, cookie), true},
		{"unknown key", csrfToken(other, cookie), false},
		{"another session's token", csrfToken(current, cookie+"x"), false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		if got := post(tc.token); got != tc.want {
			t.Errorf("%s: CheckCSRF = %v, want %v", tc.name, got, tc.want)
		}
	}
	if m.CSRFToken(request(w)) != csrfToken(current, cookie) {
		t.Error("new forms are not given tokens under the current key")
	}
}

// TestManager_BoundCSRF: a sessionless form's token is bound to its cookie
// and its purpose, passes under a rotated key, and never for another
// purpose, another cookie or no cookie.
func TestManager_BoundCSRF(t *testing.T) {
	old, current := []byte("old key"), []byte("current key")
	m := &Manager{CSRFKey: current, RotatedCSRFKeys: [][]byte{old}}
	token := m.BoundCSRFToken("report", "cookie-1")
	rotated := (&Manager{CSRFKey: old}).BoundCSRFToken("report", "cookie-1")
	cases := []struct {
		name                   string
		purpose, cookie, token string
		want                   bool
	}{
		{"current key", "report", "cookie-1", token, true},
		{"rotated key", "report", "cookie-1", rotated, true},
		{"another purpose", "verify", "cookie-1", token, false},
		{"another cookie", "report", "cookie-2", token, false},
		{"no cookie", "report", "", m.BoundCSRFToken("report", ""), false},
		{"a session's token for the same value", "report", "cookie-1", csrfToken(current, "cookie-1"), false},
		{"empty", "report", "cookie-1", "", false},
	}
	for _, tc := range cases {
		if got := m.CheckBoundCSRF(tc.purpose, tc.cookie, tc.token); got != tc.want {
			t.Errorf("%s: CheckBoundCSRF = %v, want %v", tc.name, got, tc.want)
		}
	}
}
