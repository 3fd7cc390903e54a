package ops

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMiddleware_HSTS: a provider at an https issuer sends its
// Strict-Transport-Security policy on every response, the 503 a handler
// answers while the database is down included; one at an http issuer sends
// none.
func TestMiddleware_HSTS(t *testing.T) {
	if got := HSTSFor("http://localhost:8080"); got != "" {
		t.Errorf("HSTSFor(http issuer) = %q, want none", got)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /needs-db", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
	})

	for _, tt := range []struct {
		issuer, want string
	}{
		{"https://login.example.com", "max-age=31536000; includeSubDomains"},
		{"http://localhost:8080", ""},
	} {
		h := (&Middleware{Logger: slog.New(slog.DiscardHandler), HSTS: HSTSFor(tt.issuer)}).Wrap(mux)
		for path, status := range map[string]int{"/page": http.StatusOK, "/needs-db": http.StatusServiceUnavailable, "/nowhere": http.StatusNotFound} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != status {
				t.Fatalf("%s %s: %d, want %d", tt.issuer, path, rec.Code, status)
			}
			if got := rec.Header().Get("Strict-Transport-Security"); got != tt.want {
				t.Errorf("%s %s: Strict-Transport-Security %q, want %q", tt.issuer, path, got, tt.want)
			}
		}
	}
}
