package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// TrustedProxies are the reverse proxies whose X-Forwarded-For the
// provider believes. Behind a proxy every connection comes from the proxy,
// so without them the per-address sign-in throttle would count every
// client as one: one attacker's wrong passwords would slow everybody down.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// prefixes ("10.0.0.0/8, 192.0.2.7"). Empty means none.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var out TrustedProxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %q is neither an address nor a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (t TrustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address of the client that sent r. It is the peer's,
// unless the peer is a trusted proxy: then X-Forwarded-For is read from the
// right (each proxy appends the address it saw), past every trusted proxy,
// to the first address that is not one. Entries further left were written
// by the client itself and prove nothing. An entry that is not an address
// stops the walk at the proxy that passed it on.
func (t TrustedProxies) ClientAddr(r *http.Request) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	client, err := netip.ParseAddr(peer)
	if err != nil || len(t) == 0 || !t.contains(client) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = hop.Unmap()
		if !t.contains(client) {
			break
		}
	}
	return client.String()
}

// UntrustedForwardingEvery is how often, at most, a warning says that
// X-Forwarded-For keeps arriving from peers that are not trusted proxies.
const UntrustedForwardingEvery = time.Minute

// untrustedForwarding warns when requests carry X-Forwarded-For from a
// peer that is not a trusted proxy: the header is ignored, which is right
// for a client that wrote it itself, but behind a proxy left out of
// IDP_TRUSTED_PROXIES every client counts as the proxy, and one
// attacker's wrong passwords slow everybody's sign-in. The first such
// request after start-up is logged at once, then at most one warning per
// UntrustedForwardingEvery says how many arrived since the last.
type untrustedForwarding struct {
	mu      sync.Mutex
	warned  time.Time // zero until the first warning
	ignored int       // requests since the last warning
}

// note looks at r, whose peer trusted does not contain, and warns if it is
// time to.
func (u *untrustedForwarding) note(ctx context.Context, logger *slog.Logger, now time.Time, r *http.Request, trusted TrustedProxies) {
	if len(r.Header.Values("X-Forwarded-For")) == 0 {
		return
	}
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if a, err := netip.ParseAddr(peer); err == nil && trusted.contains(a) {
		return
	}
	u.mu.Lock()
	u.ignored++
	if !u.warned.IsZero() && now.Sub(u.warned) < UntrustedForwardingEvery {
		u.mu.Unlock()
		return
	}
	n := u.ignored
	u.warned, u.ignored = now, 0
	u.mu.Unlock()
	logger.LogAttrs(ctx, slog.LevelWarn,
		"X-Forwarded-For ignored: it came from a peer that is not a trusted proxy; if the provider is behind a proxy, "+
			"list the proxy in IDP_TRUSTED_PROXIES, or every client counts as the proxy in the sign-in throttle",
		slog.String("peer", peer), slog.Int("requests", n), slog.Int("trusted_proxies", len(trusted)))
}
