package sessions

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
)

// FuzzManager_Current reads arbitrary Cookie headers and posted
// csrf_tokens ({token} stands for a live session's cookie value, {csrf}
// for its CSRF token). No panic and no error but ErrNoSession; the session
// is found only when the header carries its exact cookie as net/http reads
// it, a form passes the CSRF check only with that cookie and its token,
// and nothing in sso_sessions changes (the clock stands still, so not
// even the idle expiry slides).
func FuzzManager_Current(f *testing.F) {
	for _, seed := range [][2]string{
		{"idp_session={token}", "{csrf}"},
		{`idp_session="{token}"`, "{csrf}"},
		{"idp_session={token}x", "{csrf}"},
		{"idp_session={token}", "{csrf}x"},
		{"idp_session={token}", ""},
		{"idp_session=x; idp_session={token}", "{csrf}"},
		{"a=b;idp_session={token};c", "{csrf}"},
		{"__Host-idp_session={token}", "{csrf}"},
		{"idp_session=", ""},
		{"idp_session=%00", "%00"},
		{"", "{csrf}"},
	} {
		f.Add(seed[0], seed[1])
	}
	d := dbtest.New(f)
	ctx := context.Background()
	clk := clocktest.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	var userID string
	if err := d.Pool.QueryRow(ctx, `INSERT INTO users (email) VALUES ('a@example.com') RETURNING id`).Scan(&userID); err != nil {
		f.Fatal(err)
	}
	m := &Manager{Pool: d.Pool, Now: clk.Now, IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, CSRFKey: []byte("k"),
		RotatedCSRFKeys: [][]byte{[]byte("old")}}
	w := httptest.NewRecorder()
	s := create(f, m, w, NewSession{UserID: userID, AuthTime: clk.Now(), AMR: []string{AMRPassword}, ACR: ACRPassword})
	var token string
	for _, c := range w.Result().Cookies() {
		token = c.Value
	}
	csrf := csrfToken(m.CSRFKey, token)
	stored := func(t testing.TB) string {
		var v string
		if err := d.Pool.QueryRow(ctx, `SELECT string_agg(to_jsonb(s)::text, ',') FROM sso_sessions s`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := stored(f)
	f.Fuzz(func(t *testing.T, cookie, posted string) {
		cookie = strings.ReplaceAll(cookie, "{token}", token)
		posted = strings.ReplaceAll(posted, "{csrf}", csrf)
		r := httptest.NewRequest("POST", "/", strings.NewReader(url.Values{"csrf_token": {posted}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Cookie", cookie)
		parsed, _ := r.Cookie(m.CookieName())
		mine := parsed != nil && parsed.Value == token

		got, err := m.Current(ctx, r)
		switch {
		case err != nil && !errors.Is(err, ErrNoSession):
			t.Fatalf("Current: %v", err)
		case err == nil && (!mine || got.ID != s.ID):
			t.Fatalf("the header %q found session %s", cookie, got.ID)
		case err != nil && mine:
			t.Fatalf("the session's own cookie was not found: %v", err)
		}
		if ok := m.CheckCSRF(r); ok != (mine && posted == csrf) {
			t.Fatalf("CheckCSRF = %v for the header %q and token %q", ok, cookie, posted)
		}
		if after := stored(t); after != before {
			t.Fatalf("sso_sessions changed:\n%s\nwas\n%s", after, before)
		}
	})
}
