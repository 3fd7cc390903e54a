package server_test

import (
	"net/http"
	"testing"

	"github.com/idp/idp/internal/ops"
	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/servertest"
)

// forwardedFor adds the X-Forwarded-For a reverse proxy would.
type forwardedFor struct {
	addr string
	next http.RoundTripper
}

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return f.next.RoundTrip(r)
}

// TestTrustedProxies: behind a trusted proxy a wrong password counts
// against the client's address, not the proxy's; from a peer that is not
// trusted the header is ignored.
func TestTrustedProxies(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted string
		want    string
	}{
		{"trusted proxy", "127.0.0.0/8, ::1", "pwd-ip:198.51.100.1"},
		{"no trusted proxy", "", "pwd-ip:127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxies, err := ops.ParseTrustedProxies(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := servertest.New(t, func(c *server.Config) { c.TrustedProxies = proxies })
			h.CreateUser("ada@example.com", "correct horse battery")
			rp := h.NewRP("app")
			b := servertest.NewBrowser(t)
			b.Client.Transport = forwardedFor{addr: "198.51.100.1", next: http.DefaultTransport}
			if p := b.SignIn(rp.AuthURL().URL, "ada@example.com", "wrong password!"); p.Status != http.StatusUnauthorized {
				t.Fatalf("wrong password: status %d", p.Status)
			}
			var keys []string
			rows, err := h.DB.Pool.Query(h.Ctx, `SELECT key FROM throttle WHERE key LIKE 'pwd-ip:%'`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			if len(keys) != 1 || keys[0] != tt.want {
				t.Errorf("address throttle keys = %v, want [%s]", keys, tt.want)
			}
		})
	}
}
