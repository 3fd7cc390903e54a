package reqlimit_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idp/idp/internal/reqlimit"
)

// oneByte hides a reader's length, as a chunked body does.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

// TestLimits_Wrap: bodies up to the limit reach the handler whole, declared
// or chunked; one byte more is refused before the handler runs, and the
// refused request still carries its route for whoever wraps the limits.
func TestLimits_Wrap(t *testing.T) {
	mux := http.NewServeMux()
	var got string
	read := func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("handler: read body: %v", err)
		}
		got = string(b)
	}
	mux.HandleFunc("POST /form", read)
	mux.HandleFunc("POST /big/form", read)
	h := reqlimit.Limits{MaxBody: 10, MaxQuery: 5, Larger: map[string]int64{"/big/": 20}}.Wrap(mux)

	for _, tc := range []struct {
		name    string
		path    string
		body    string
		chunked bool
		query   string
		status  int
	}{
		{"at the limit", "/form", "0123456789", false, "", 200},
		{"at the limit, chunked", "/form", "0123456789", true, "", 200},
		{"over", "/form", "0123456789a", false, "", 413},
		{"over, chunked", "/form", "0123456789a", true, "", 413},
		{"long query", "/form", "", false, "a=12345", 414},
		{"a larger route", "/big/form", "0123456789abcdefghij", false, "", 200},
		{"over a larger route's limit", "/big/form", "0123456789abcdefghijk", true, "", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = ""
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = oneByte{body}
			}
			r := httptest.NewRequest("POST", tc.path+"?"+tc.query, body)
			if tc.chunked {
				r.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if tc.status == 200 && got != tc.body {
				t.Errorf("the handler read %q, want %q", got, tc.body)
			}
			if tc.status != 200 && (got != "" || r.Pattern != "POST "+tc.path) {
				t.Errorf("refused, yet the handler read %q; route %q", got, r.Pattern)
			}
		})
	}
}

// TestLimits_RefusalFormat: a page is refused with the page, an OAuth
// endpoint and a script asking for JSON with the OAuth error format.
func TestLimits_RefusalFormat(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(http.ResponseWriter, *http.Request) {})
	h := reqlimit.Limits{MaxBody: 1, JSONPaths: []string{"/oauth2/token"},
		Page: func(w http.ResponseWriter, status int, message, _ string) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			io.WriteString(w, "<p>"+message)
		}}.Wrap(mux)
	for _, tc := range []struct {
		path, accept, want string
	}{
		{"/login", "text/html", "text/html"},
		{"/oauth2/token", "", "application/json;charset=UTF-8"},
		{"/login/passkey/options", "application/json", "application/json;charset=UTF-8"},
	} {
		r := httptest.NewRequest("POST", tc.path, strings.NewReader("ab"))
		r.Header.Set("Accept", tc.accept)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 413 || w.Header().Get("Content-Type") != tc.want {
			t.Errorf("%s (Accept %q): %d %s, want 413 %s", tc.path, tc.accept, w.Code, w.Header().Get("Content-Type"), tc.want)
		}
	}
}
