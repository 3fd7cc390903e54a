package netguard

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// DeliveryClient is the HTTP client of a delivery to an address someone
// registered (a logout token, a SET): a copy of base (nil for a new one)
// with timeout when base sets none, no redirects (they would carry the
// delivery to where nobody registered), conns idle connections per host
// when base brings no client of its own (deliveries run in parallel, often
// to one host, and DefaultTransport keeps two), and, unless allowPrivate,
// every address dialled checked by Control with no proxy (a proxy would
// dial for us, past the check).
func DeliveryClient(base *http.Client, timeout time.Duration, conns int, allowPrivate bool) (*http.Client, error) {
	client := &http.Client{}
	if base != nil {
		cp := *base
		client = &cp
	}
	if client.Timeout <= 0 {
		client.Timeout = timeout
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = conns
		client.Transport = t
	}
	if allowPrivate {
		return client, nil
	}
	t, ok := client.Transport.(*http.Transport)
	if client.Transport == nil {
		t, ok = http.DefaultTransport.(*http.Transport), true
	}
	if !ok {
		return nil, errors.New("the dial policy needs an *http.Transport (or private addresses allowed)")
	}
	t = t.Clone()
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: Control}).DialContext
	client.Transport = t
	return client, nil
}
