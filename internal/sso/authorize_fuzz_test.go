package sso

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzResumeQuery: whatever query an app or a stranger sends, a request
// that checkClientAndRedirect lets through (oversizeParam finds nothing)
// is stored with its sign-in (resumeQuery) holding only known
// parameters, each within its bound, without max_age or prompt=login, and
// with every other known value exactly as sent; the request's own form is
// left as it was. Seeds are TestLimits_StoredFlow's cases and the prompt
// and max_age rules.
func FuzzResumeQuery(f *testing.F) {
	f.Add("response_type=code&client_id=app&state=s&code_challenge=c&code_challenge_method=S256&junk=" + strings.Repeat("x", 300))
	f.Add("state=" + strings.Repeat("s", 4097))
	f.Add("state=" + strings.Repeat("s", 4096) + "&state=t")
	f.Add("prompt=login&max_age=0&scope=openid")
	f.Add("prompt=login+consent&prompt=none")
	f.Add("prompt=%20login%20&nonce=n")
	f.Add("redirect_uri=https%3A%2F%2Fapp.example%2Fcb&audience=a&audience=b&id_token_hint=e.y.j")
	f.Add("client_id=%00&scope=openid%zz&;=x")
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return // the authorization endpoint answers 400 before any of this
		}
		if name, _ := oversizeParam(form); name != "" {
			limit, known := authorizeParams[name]
			long := false
			for _, v := range form[name] {
				long = long || len(v) > limit
			}
			if !known || !long {
				t.Fatalf("oversizeParam named %q (known %v), which holds no value over its limit", name, known)
			}
			return // refused with a page, nothing stored
		}
		before := canonical(form)
		q := resumeQuery(form)
		if canonical(form) != before {
			t.Fatalf("resumeQuery changed the request's own form: %q, was %q", canonical(form), before)
		}
		for k, vs := range q {
			limit, known := authorizeParams[k]
			if !known {
				t.Fatalf("unknown parameter %q kept", k)
			}
			for _, v := range vs {
				if len(v) > limit {
					t.Fatalf("%s kept with %d bytes, over its %d", k, len(v), limit)
				}
			}
		}
		if q.Has("max_age") {
			t.Fatal("max_age kept: the fresh sign-in would be asked again")
		}
		if len(q["prompt"]) > 1 || slices.Contains(strings.Fields(q.Get("prompt")), "login") {
			t.Fatalf("prompt kept as %q: login would send the person round in a loop", q["prompt"])
		}
		for k, vs := range form {
			if _, known := authorizeParams[k]; !known || k == "max_age" || k == "prompt" {
				continue
			}
			if !slices.Equal(q[k], vs) {
				t.Fatalf("%s stored as %q, sent as %q", k, q[k], vs)
			}
		}
		// What is stored reads back as what was kept.
		back, err := url.ParseQuery(q.Encode())
		if err != nil || canonical(back) != canonical(q) {
			t.Fatalf("the stored query does not read back: %v", err)
		}
	})
}

// encodeSorted is a canonical text of form (url.Values.Encode sorts keys).
func canonical(form url.Values) string { return form.Encode() }
