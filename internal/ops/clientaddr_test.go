package ops

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
