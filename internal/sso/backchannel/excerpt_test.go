package backchannel

import (
	"net/http"
	"strings"
	"testing"

	"github.com/idp/idp/internal/sso/keys"
)

func TestExcerpt(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwOi8vaWRwIn0.c2lnbmF0dXJl"
	tests := []struct {
		name, contentType, body, want string
	}{
		{"plain text", "text/plain; charset=utf-8", "invalid_request: unknown sid\n", "invalid_request: unknown sid"},
		{"an HTML page", "text/html", "<!doctype html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style>" +
			"<script>alert(1)</script></head><body>\n  <h1>502 Bad&nbsp;Gateway</h1><!-- upstream --><hr><center>nginx</center></body></html>",
			"502 Bad Gateway 502 Bad Gateway nginx"},
		{"HTML without a content type", "", "<html><body><p>Service <b>unavailable</b></p></body></html>", "Service unavailable"},
		{"terminal escapes and line breaks", "text/plain", "error\x1b[31m red\r\n\tnext\x07line\x00", "error [31m red next line"},
		{"direction and invisible characters", "text/plain", "invoice\u202egnp.exe a\u200bb\ufeff", "invoice gnp.exe a b"},
		{"the token and other JWTs", "application/json", `{"error":"bad token ` + token + `", "other":"eyJhbGciOiJFUzI1NiJ9.eyJ4"}`,
			`{"error":"bad token [logout_token]", "other":"[jwt]"}`},
		{"the token in a page", "text/html", "<p>cannot use " + token + "</p>", "cannot use [logout_token]"},
		{"long", "text/plain", strings.Repeat("é", 300), strings.Repeat("é", maxExcerpt-1) + "…"},
		{"not text", "application/octet-stream", "\x89PNG\r\n\x1a\n", ""},
		{"binary without a content type", "", "\x00\x01\x02\x03binary", ""},
		{"invalid UTF-8", "text/plain", "a\xffb", "a b"},
		{"a malformed content type", "text/", "hello", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := excerpt([]byte(tt.body), tt.contentType, token); got != tt.want {
				t.Errorf("excerpt = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWorker_ErrorExcerpt: an app that answers with an HTML error page
// full of markup and escapes leaves administrators one short line of its
// text in last_error.
func TestWorker_ErrorExcerpt(t *testing.T) {
	e := newEnv(t)
	rc := e.receiver(func(_ int, w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("<html><head><style>h1{}</style></head><body>\n<h1>Bad\x1b[2J request</h1>\n<p>" +
			strings.Repeat("detail ", 100) + "</p></body></html>"))
	})
	e.client("app", keys.RS256)
	id, _, _ := e.queue("app", rc.URL, true)
	e.deliverDue(e.worker())
	r := e.row(id)
	text := []rune("Bad [2J request " + strings.Repeat("detail ", 100))
	want := "HTTP 400: " + strings.TrimSpace(string(text[:maxExcerpt-1])) + "…"
	if r.LastError != want {
		t.Errorf("last_error = %q\nwant         %q", r.LastError, want)
	}
}
