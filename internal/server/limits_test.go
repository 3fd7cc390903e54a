package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/servertest"
)

// storedRows counts the rows of every table a request could write to.
func storedRows(t *testing.T, h *servertest.Harness) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"login_flows", "sso_sessions", "client_sessions", "oauth_authorize_codes",
		"oauth_access_tokens", "oauth_refresh_tokens", "throttle", "audit_log", "consents", "outbox"} {
		var n int
		if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

func assertNothingStored(t *testing.T, h *servertest.Harness, before map[string]int) {
	t.Helper()
	after := storedRows(t, h)
	for table, n := range after {
		if n != before[table] {
			t.Errorf("%s: %d rows after the refused request, %d before", table, n, before[table])
		}
	}
}

// rawRequest sends head (the request line and headers) and the start of
// a body on a fresh connection, then reads the answer without sending
// the rest: getting one shows the server did not wait for the whole body.
// The deadline only keeps a broken server from hanging the test.
func rawRequest(t *testing.T, h *servertest.Harness, head string, start []byte) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(start); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// authorizeForm is a valid authorization request of rp.
func authorizeForm(rp *servertest.RP) url.Values {
	u, _ := url.Parse(rp.AuthURL().URL)
	return u.Query()
}

// TestLimits_BodiesAndQueries: a body over the limit is refused with 413
// before it is read (declared or chunked), in the OAuth error format on the
// OAuth endpoints and as an HTML page in the UI; multipart gets 415; a long
// query 414; nothing of a refused request is stored.
func TestLimits_BodiesAndQueries(t *testing.T) {
	h := servertest.New(t)
	rp := h.NewRP("app")
	const twoMB = 2 << 20

	t.Run("2 MB authorization request refused, nothing stored", func(t *testing.T) {
		before := storedRows(t, h)
		form := authorizeForm(rp)
		form.Set("junk", strings.Repeat("x", twoMB))
		resp, err := http.Post(h.URL+"/oauth2/auth", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		p := servertest.ReadPage(t, resp)
		if p.Status != http.StatusRequestEntityTooLarge || !strings.Contains(p.Body, "too large") ||
			!strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
			t.Errorf("status %d (%s), want 413 with an HTML page saying it is too large:\n%.300s",
				p.Status, p.Header.Get("Content-Type"), p.Body)
		}
		assertNothingStored(t, h, before)
	})

	t.Run("declared 2 MB: answered before a byte of the body", func(t *testing.T) {
		before := storedRows(t, h)
		resp := rawRequest(t, h, fmt.Sprintf("POST /oauth2/token HTTP/1.1\r\nHost: %s\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", h.URL[7:], twoMB), nil)
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || body.Error != "invalid_request" {
			t.Errorf("status %d, error %q; want 413 invalid_request", resp.StatusCode, body.Error)
		}
		assertNothingStored(t, h, before)
	})

	t.Run("chunked: answered once the limit is passed", func(t *testing.T) {
		before := storedRows(t, h)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		start := append(fmt.Appendf(nil, "%x\r\n", len(chunk)), chunk...)
		start = append(start, "\r\n"...)
		resp := rawRequest(t, h, fmt.Sprintf("POST /login HTTP/1.1\r\nHost: %s\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n", h.URL[7:]), start)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
		assertNothingStored(t, h, before)
	})

	big := strings.Repeat("x", 40<<10) // just over the 32 KiB limit
	for _, tc := range []struct {
		path string
		json bool
	}{
		{"/oauth2/token", true}, {"/oauth2/introspect", true}, {"/oauth2/revoke", true}, {"/userinfo", true},
		{"/oauth2/auth", false}, {"/login", false}, {"/login/totp", false}, {"/account/password", false},
		{"/oauth2/sessions/logout", false}, {"/admin/api/users", true},
	} {
		t.Run("40 KiB to "+tc.path, func(t *testing.T) {
			before := storedRows(t, h)
			resp, err := http.Post(h.URL+tc.path, "application/x-www-form-urlencoded", strings.NewReader("a="+big))
			if err != nil {
				t.Fatal(err)
			}
			p := servertest.ReadPage(t, resp)
			if p.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413:\n%.300s", p.Status, p.Body)
			}
			var e struct{ Error string }
			isJSON := json.Unmarshal([]byte(p.Body), &e) == nil && e.Error == "invalid_request"
			isPage := strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") && strings.Contains(p.Body, "too large")
			if tc.json && !isJSON || !tc.json && !isPage {
				t.Errorf("answer (%s) is not the %s error:\n%.300s", p.Header.Get("Content-Type"),
					map[bool]string{true: "OAuth JSON", false: "HTML page"}[tc.json], p.Body)
			}
			assertNothingStored(t, h, before)
		})
	}

	t.Run("a passkey's route takes a WebAuthn credential", func(t *testing.T) {
		for size, want := range map[int]bool{40 << 10: true, 100 << 10: false} {
			resp, err := http.Post(h.URL+"/login/passkey", "application/x-www-form-urlencoded",
				strings.NewReader("credential="+strings.Repeat("x", size)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if taken := resp.StatusCode != http.StatusRequestEntityTooLarge; taken != want {
				t.Errorf("%d KiB to /login/passkey: status %d, want it taken: %v", size>>10, resp.StatusCode, want)
			}
		}
	})

	for _, path := range []string{"/oauth2/token", "/login"} {
		t.Run("multipart to "+path, func(t *testing.T) {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			mw.WriteField("grant_type", "client_credentials")
			mw.Close()
			req, _ := http.NewRequest("POST", h.URL+path, &buf)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.SetBasicAuth(rp.ID, rp.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("status %d, want 415", resp.StatusCode)
			}
		})
	}

	t.Run("20 KiB query", func(t *testing.T) {
		form := authorizeForm(rp)
		form.Set("junk", strings.Repeat("x", 20<<10))
		resp, err := http.Get(h.URL + "/oauth2/auth?" + form.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if p := servertest.ReadPage(t, resp); p.Status != http.StatusRequestURITooLong || !strings.Contains(p.Body, "too long") {
			t.Errorf("status %d, want 414 with a page saying so:\n%.300s", p.Status, p.Body)
		}
	})
}

// TestLimits_StoredFlow: a sign-in keeps only the authorization
// parameters it knows, each of a bounded size: junk is not stored with the
// flow, and a known parameter that is too long is refused with a page.
func TestLimits_StoredFlow(t *testing.T) {
	h := servertest.New(t)
	rp := h.NewRP("app")

	t.Run("unknown parameters are not stored", func(t *testing.T) {
		form := authorizeForm(rp)
		form.Set("junk", strings.Repeat("x", 12<<10))
		p := servertest.NewBrowser(t).Get(h.URL + "/oauth2/auth?" + form.Encode())
		if !p.IsLoginForm() {
			t.Fatalf("want the sign-in form, got %s (%d)", p.URL, p.Status)
		}
		var q string
		if err := h.DB.Pool.QueryRow(h.Ctx, `SELECT authorize_query FROM login_flows`).Scan(&q); err != nil {
			t.Fatal(err)
		}
		stored, _ := url.ParseQuery(q)
		if stored.Has("junk") || len(q) > 2<<10 {
			t.Errorf("the flow stored %d bytes, junk included: %v", len(q), stored.Has("junk"))
		}
		if stored.Get("state") != form.Get("state") || stored.Get("code_challenge") != form.Get("code_challenge") {
			t.Errorf("the flow lost what it resumes: %v", stored)
		}
	})

	t.Run("a known parameter too long", func(t *testing.T) {
		before := storedRows(t, h)
		form := authorizeForm(rp)
		form.Set("state", strings.Repeat("s", 5000))
		p := servertest.NewBrowser(t).Get(h.URL + "/oauth2/auth?" + form.Encode())
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "state is too long") || p.URL.Host != h.URL[7:] {
			t.Errorf("status %d at %s, want 400 with a page naming state:\n%.300s", p.Status, p.URL, p.Body)
		}
		assertNothingStored(t, h, before)
	})
}
