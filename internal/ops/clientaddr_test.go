package ops

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.7 ,::1,10.1.2.3/8")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "::1/128", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	if none, err := ParseTrustedProxies(""); err != nil || len(none) != 0 {
		t.Errorf("empty = %v, %v; want none", none, err)
	}
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0.1:80"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client: its header is ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"one trusted proxy", "10.0.0.5:443", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written entries left of the proxy's are ignored", "10.0.0.5:443", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"a chain of trusted proxies", "10.0.0.5:443", []string{"198.51.100.1, 192.0.2.7", "10.9.9.9"}, "198.51.100.1"},
		{"all trusted: the leftmost", "10.0.0.5:443", []string{"10.1.1.1, 10.2.2.2"}, "10.1.1.1"},
		{"no header: the proxy", "10.0.0.5:443", nil, "10.0.0.5"},
		{"garbage stops at the hop that passed it", "10.0.0.5:443", []string{"198.51.100.1, not-an-ip, 10.2.2.2"}, "10.2.2.2"},
		{"IPv4-mapped IPv6", "[::ffff:10.0.0.5]:443", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := trusted.ClientAddr(r); got != tt.want {
				t.Errorf("ClientAddr = %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("none trusted: always the peer", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "10.0.0.5:443"
		r.Header.Set("X-Forwarded-For", "198.51.100.1")
		if got := TrustedProxies(nil).ClientAddr(r); got != "10.0.0.5" {
			t.Errorf("ClientAddr = %s, want the peer", got)
		}
	})
}

func TestMiddleware_TrustedProxies(t *testing.T) {
	trusted, _ := ParseTrustedProxies("10.0.0.0/8")
	var seen string
	h := (&Middleware{TrustedProxies: trusted}).Wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen = r.RemoteAddr
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.5:4431"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if seen != "198.51.100.1:4431" {
		t.Errorf("handler saw RemoteAddr %q, want the client's address behind the proxy", seen)
	}
}

// warnings collects the log records of level warn.
type warnings struct {
	mu      sync.Mutex
	records []slog.Record
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.records = append(w.records, r)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.records)
}

// TestMiddleware_UntrustedForwarding: X-Forwarded-For from a peer that is
// not a trusted proxy is warned about at once, then at most once a minute
// with the number of such requests since; from a trusted proxy, or without
// the header, nothing is said.
func TestMiddleware_UntrustedForwarding(t *testing.T) {
	trusted, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	logs := &warnings{}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	m := &Middleware{Logger: slog.New(logs), TrustedProxies: trusted, Now: func() time.Time { return now }}
	h := m.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func(peer string, xff bool) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer + ":4711"
		if xff {
			r.Header.Set("X-Forwarded-For", "198.51.100.1")
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}

	send("192.0.2.1", false)
	send("10.1.2.3", true)
	if n := logs.count(); n != 0 {
		t.Fatalf("%d warnings for requests without the header or from a trusted proxy, want none", n)
	}
	send("192.0.2.1", true)
	if n := logs.count(); n != 1 {
		t.Fatalf("%d warnings after the first untrusted X-Forwarded-For, want 1 at once", n)
	}
	for range 10 {
		now = now.Add(5 * time.Second)
		send("192.0.2.1", true)
	}
	if n := logs.count(); n != 1 {
		t.Fatalf("%d warnings within the minute, want still 1", n)
	}
	now = now.Add(15 * time.Second)
	send("192.0.2.9", true)
	if n := logs.count(); n != 2 {
		t.Fatalf("%d warnings a minute after the first, want 2", n)
	}
	attrs := map[string]string{}
	logs.records[1].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if attrs["peer"] != "192.0.2.9" || attrs["requests"] != "11" || !strings.Contains(logs.records[1].Message, "IDP_TRUSTED_PROXIES") {
		t.Errorf("second warning %q %v, want peer 192.0.2.9, 11 requests, naming IDP_TRUSTED_PROXIES", logs.records[1].Message, attrs)
	}
}
