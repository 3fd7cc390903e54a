package ops

import (
	"net/url"
	"strings"
	"testing"
)

// The middleware and the database gauges are tested end to end, against a
// real instance and PostgreSQL, in internal/server (ops_test.go). These are
// the pure decisions underneath.

func TestLoginOutcome(t *testing.T) {
	cases := []struct {
		name     string
		step     string
		status   int
		location string
		want     string
	}{
		{"password accepted, second factor next", "password", 303, "/login/totp", "next_step"},
		{"password accepted, enrollment next", "password", 303, "/login/enroll", "next_step"},
		{"password completes the sign-in", "password", 303, "/oauth2/auth?client_id=app", "signed_in"},
		{"wrong password", "password", 401, "", "wrong_password"},
		{"throttled", "password", 429, "", "throttled"},
		{"disabled account", "password", 403, "", "rejected"},
		{"expired flow", "password", 400, "", "invalid"},
		{"code completes the sign-in", "totp", 303, "/oauth2/auth?client_id=app", "signed_in"},
		{"wrong code", "totp", 401, "", "wrong_code"},
		{"too many wrong codes", "totp", 403, "", "rejected"},
		{"enrollment shows recovery codes", "enroll", 200, "", "signed_in"},
		{"wrong enrollment code", "enroll", 401, "", "wrong_code"},
		{"database error", "totp", 503, "", "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := loginOutcome(c.step, c.status, c.location); got != c.want {
				t.Errorf("loginOutcome(%s, %d, %q) = %s, want %s", c.step, c.status, c.location, got, c.want)
			}
		})
	}
}

func TestSaneRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"req-abc.123":                          true,
		"0f8fad5b-d9cb-469f-a165-70867728950e": true,
		"trace:span_1":                         true,
		"":                                     false,
		strings.Repeat("a", 64):                true,
		strings.Repeat("a", 65):                false,
		"with space":                           false,
		"quote\"d":                             false,
		"new\nline":                            false,
		"ünïcode":                              false,
	} {
		if got := saneRequestID(id); got != want {
			t.Errorf("saneRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestTemporarilyUnavailable(t *testing.T) {
	t.Run("server_error rewritten, state kept", func(t *testing.T) {
		got, ok := temporarilyUnavailable("https://app.example/cb?error=server_error&error_description=x&error_hint=y&state=s1")
		if !ok {
			t.Fatal("not rewritten")
		}
		u, _ := url.Parse(got)
		q := u.Query()
		if q.Get("error") != "temporarily_unavailable" || q.Get("state") != "s1" || q.Has("error_hint") ||
			u.Host != "app.example" || u.Path != "/cb" {
			t.Errorf("rewritten to %s", got)
		}
	})
	for _, loc := range []string{
		"",
		"/login",
		"https://app.example/cb?code=abc&state=s1",
		"https://app.example/cb?error=access_denied&state=s1",
		"https://app.example/cb?error=login_required&error_description=server_error",
	} {
		if got, ok := temporarilyUnavailable(loc); ok {
			t.Errorf("%q rewritten to %q; only error=server_error may be", loc, got)
		}
	}
}

func TestJSONRoute(t *testing.T) {
	for pattern, want := range map[string]bool{
		"POST /oauth2/token":                    true,
		"POST /oauth2/introspect":               true,
		"GET /userinfo":                         true,
		"DELETE /admin/api/users/{id}/sessions": true,
		"POST /login":                           false,
		"GET /oauth2/auth":                      false,
		"GET /account":                          false,
	} {
		if got := jsonRoute(pattern); got != want {
			t.Errorf("jsonRoute(%q) = %v, want %v", pattern, got, want)
		}
	}
}
