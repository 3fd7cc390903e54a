package reqlimit_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idp/idp/internal/reqlimit"
)

// FuzzLimits_Wrap: whatever the path, query, content type and body, the
// limits never panic or answer 5xx; a refused request (4xx) never reaches
// the handler, and an accepted one reaches it with its body whole and
// within the limit. Seeds are TestLimits_Wrap's cases.
func FuzzLimits_Wrap(f *testing.F) {
	f.Add("/form", "", "application/x-www-form-urlencoded", "0123456789", false)
	f.Add("/form", "", "", "0123456789a", true)
	f.Add("/form", "a=12345", "", "", false)
	f.Add("/big/form", "", "", "0123456789abcdefghij", false)
	f.Add("/big/form", "", "", "0123456789abcdefghijk", true)
	f.Add("/form", "", "multipart/form-data; boundary=x", "--x--", false)
	f.Add("/form", "", "multipart/", "a", true)
	f.Fuzz(func(t *testing.T, path, query, contentType, body string, chunked bool) {
		mux := http.NewServeMux()
		reached, got := false, ""
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			reached = true
			b, _ := io.ReadAll(r.Body)
			got = string(b)
		})
		h := reqlimit.Limits{MaxBody: 10, MaxQuery: 5, Larger: map[string]int64{"/big/": 20}}.Wrap(mux)
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = oneByte{rd}
		}
		r := httptest.NewRequest("POST", "/", rd)
		r.URL.Path, r.URL.RawQuery = "/"+strings.TrimLeft(path, "/"), query
		r.ContentLength = int64(len(body))
		if chunked {
			r.ContentLength = -1
		}
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case w.Code >= 500:
			t.Fatalf("status %d", w.Code)
		case w.Code >= 400 && reached:
			t.Fatalf("refused with %d, yet the handler ran", w.Code)
		case reached && got != body:
			t.Fatalf("the handler read %q, want %q", got, body)
		case reached && len(body) > 20:
			t.Fatalf("a %d-byte body passed the limits", len(body))
		}
	})
}
