package dpop

import (
	"errors"
	"net/http"
	"testing"
)

func TestSameURL(t *testing.T) {
	const want = "https://login.example.com/oauth2/token"
	cases := []struct {
		htu  string
		same bool
	}{
		{"https://login.example.com/oauth2/token", true},
		{"HTTPS://Login.Example.COM/oauth2/token", true},
		{"https://login.example.com:443/oauth2/token", true},
		{"https://login.example.com/oauth2/token?x=1#f", true}, // query and fragment are ignored
		{"http://login.example.com/oauth2/token", false},
		{"https://login.example.com:8443/oauth2/token", false},
		{"https://login.example.com/oauth2/Token", false},
		{"https://login.example.com/oauth2/token/", false},
		{"https://evil.example/oauth2/token", false},
		{"https://user@login.example.com/oauth2/token", false},
		{"/oauth2/token", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := sameURL(tc.htu, want); got != tc.same {
			t.Errorf("sameURL(%q) = %v, want %v", tc.htu, got, tc.same)
		}
	}
}

func TestFromHeader(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		want   string
		bad    bool
	}{
		{"none", nil, "", false},
		{"one", []string{"a.b.c"}, "a.b.c", false},
		{"two headers", []string{"a.b.c", "d.e.f"}, "", true},
		{"two in one", []string{"a.b.c, d.e.f"}, "", true},
		{"empty", []string{""}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add(Header, v)
			}
			got, err := FromHeader(h)
			if got != tc.want || errors.Is(err, ErrInvalid) != tc.bad {
				t.Fatalf("FromHeader = %q, %v; want %q, invalid %v", got, err, tc.want, tc.bad)
			}
		})
	}
}
