// Package netguard decides which addresses the provider's own requests to
// apps (back-channel logout) may reach. Whoever registers an app chooses
// the URI the provider will POST to; pointed at the provider's own host, a
// private network or a link-local address (a cloud's metadata service at
// 169.254.169.254) it would turn the provider into a probe of the networks
// behind it (server-side request forgery). Such addresses are refused
// unless the operator allows them (IDP_ALLOW_PRIVATE_BACKCHANNEL, for
// demos and tests where the apps run on the same machine).
//
// The check is made twice: on the URI's host when an app is registered
// (InternalHost), and on every address actually dialled, after DNS
// resolution (Control), so a public name that resolves to a private
// address, now or later, is refused too.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrInternal is wrapped by Control's refusals.
var ErrInternal = errors.New("netguard: a loopback, private or link-local address")

// internalPrefixes are the ranges beyond what netip.Addr's predicates
// cover that no app on the internet is reachable at.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT, shared address space
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and the broadcast address
}

// nat64 is the well-known NAT64 prefix: its addresses carry an IPv4
// address, judged as such.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Internal reports whether a is an address of this host, of a private
// network or of a link (loopback, RFC 1918 and unique local, link-local,
// unspecified, multicast, carrier-grade NAT, reserved), including such an
// IPv4 address written as IPv6.
func Internal(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() {
		return true
	}
	for _, p := range internalPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// InternalHost reports whether a URI's host (as url.URL.Hostname gives it)
// is internal by itself: an internal address literal, or localhost. Other
// names are judged when they are resolved (Control).
func InternalHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && Internal(a)
}

// Control is a net.Dialer Control function that refuses to connect to an
// internal address. It runs for every address a name resolved to, just
// before connecting, so it judges what is really dialled.
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("netguard: %q: %w", address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("netguard: %q is not an address", host)
	}
	if Internal(a) {
		return fmt.Errorf("%w: %s", ErrInternal, a)
	}
	return nil
}
