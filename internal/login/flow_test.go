package login

import "testing"

func TestLocalPath(t *testing.T) {
	cases := map[string]string{
		"/admin":                 "/admin",
		"/admin/users/x?tab=1":   "/admin/users/x?tab=1",
		"":                       "",
		"admin":                  "",
		"//evil.example/":        "",
		"https://evil.example/":  "",
		"/\\evil.example":        "",
		"/ok\r\nSet-Cookie: x=1": "",
	}
	for in, want := range cases {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
