package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestInternal(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"10.1.2.3": true, "172.16.0.1": true, "172.31.255.255": true, "192.168.1.1": true, "fd00::1": true,
		"169.254.169.254": true, "fe80::1": true, "0.0.0.0": true, "::": true, "0.1.2.3": true,
		"100.64.0.1": true, "198.18.0.1": true, "255.255.255.255": true, "224.0.0.1": true, "ff02::1": true,
		"::ffff:10.0.0.1": true, "::ffff:127.0.0.1": true, "64:ff9b::a00:1": true, "64:ff9b::7f00:1": true,
		"8.8.8.8": false, "1.1.1.1": false, "172.32.0.1": false, "100.128.0.1": false, "2001:4860:4860::8888": false,
		"::ffff:8.8.8.8": false, "64:ff9b::808:808": false, "192.0.2.1": false, "203.0.113.9": false,
	} {
		if got := Internal(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Internal(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestInternalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "app.localhost": true, "127.0.0.1": true, "::1": true,
		"10.0.0.7": true, "169.254.169.254": true,
		"app.example.com": false, "8.8.8.8": false, "localhost.example.com": false,
	} {
		if got := InternalHost(host); got != want {
			t.Errorf("InternalHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestControl: a dialer with Control refuses a name that resolves to
// loopback, after resolution, before connecting.
func TestControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := &net.Dialer{Control: Control}
	c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	if err == nil {
		c.Close()
		t.Fatal("dialled localhost")
	}
	if !errors.Is(err, ErrInternal) {
		t.Errorf("err = %v, want ErrInternal", err)
	}
}
