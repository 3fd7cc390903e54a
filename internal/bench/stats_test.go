package bench

import (
	"testing"
	"time"
)

func TestHistogram_Quantile(t *testing.T) {
	// 1..1000 ms, each once: p50 is 500 ms, p99 990 ms, to within the
	// buckets' 1%.
	var a, b histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Millisecond
		if i%2 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	a.merge(&b)
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 500 * time.Millisecond},
		{0.99, 990 * time.Millisecond},
		{1, time.Second},
	} {
		got := a.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("quantile(%v) = %s, want %s ± 1%%", tc.q, got, tc.want)
		}
	}
	if a.n != 1000 || a.min != time.Millisecond || a.max != time.Second {
		t.Errorf("n, min, max = %d, %s, %s; want 1000, 1ms, 1s", a.n, a.min, a.max)
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %s, want 0", got)
	}
}

func TestRouteOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/oauth2/token", "/oauth2/token"},
		{"/admin/api/users/7b885049-7ea1-455a-bd14-fc64d6ec873a/sessions", "/admin/api/users/{id}/sessions"},
		{"/admin/api/outbox/42/retry", "/admin/api/outbox/{id}/retry"},
		{"/login/totp", "/login/totp"},
		{"/", "/"},
	} {
		if got := routeOf(tc.path); got != tc.want {
			t.Errorf("routeOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestPercentRange(t *testing.T) {
	for _, tt := range []struct {
		ratios []float64
		want   string
	}{
		{nil, ""},
		{[]float64{0.61}, ""},
		{[]float64{0.64, 0.571, 0.6}, "57.1–64.0%"},
	} {
		if got := percentRange(tt.ratios); got != tt.want {
			t.Errorf("percentRange(%v) = %q, want %q", tt.ratios, got, tt.want)
		}
	}
}
