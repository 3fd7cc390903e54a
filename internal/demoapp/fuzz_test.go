package demoapp_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/idp/idp/internal/demoapp/demoapptest"
	"github.com/idp/idp/internal/servertest"
)

const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// FuzzApp_BackchannelLogout posts arbitrary logout tokens to a demo app:
// strings as they come (signed false), and payloads signed with the
// provider's own key under a fuzzed typ (signed true; {iss}, {aud},
// {sub}, {sid}, {iat}, {exp} and {jti} are a valid token's values). No
// panic and never a 5xx; a token that does not verify is a 400 and ends no
// session; and one that does is a logout token by the spec (§2.6),
// checked here independently of the app: the provider's signature, typ
// logout+jwt, this issuer and audience, iat, a live exp, the logout event
// as an object, no nonce, a sub or a sid, a jti not used before.
func FuzzApp_BackchannelLogout(f *testing.F) {
	valid := `{"iss":"{iss}","aud":"{aud}","iat":{iat},"exp":{exp},"jti":"{jti}","sid":"{sid}","events":{"` + logoutEvent + `":{}}}`
	for _, seed := range []struct {
		signed     bool
		typ, token string
	}{
		{true, "logout+jwt", valid},
		{true, "application/logout+JWT", `{"iss":"{iss}","aud":["other","{aud}"],"iat":{iat},"exp":{exp},"jti":"{jti}","sub":"{sub}","events":{"` + logoutEvent + `":{}}}`},
		{true, "JWT", valid},
		{true, "", valid},
		{true, "logout+jwt", strings.Replace(valid, `"jti"`, `"nonce":null,"jti"`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `":{}}}`, `":"yes"}}`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"sid":"{sid}"`, `"sid":""`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"exp":{exp}`, `"exp":1`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"exp":{exp},`, ``, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"iss":"{iss}"`, `"iss":"{iss}","iss":"https://evil.example"`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"aud":"{aud}"`, `"aud":"app-b"`, 1)},
		{true, "logout+jwt", strings.Replace(valid, `"jti":"{jti}"`, `"jti":7`, 1)},
		{true, "logout+jwt", `[]`},
		{true, "logout+jwt", `not json`},
		{false, "", "garbage"},
		{false, "", "a.b.c"},
		{false, "", "eyJhbGciOiJub25lIiwidHlwIjoibG9nb3V0K2p3dCJ9.e30."},
		{false, "", ""},
	} {
		f.Add(seed.signed, seed.typ, seed.token)
	}
	servertest.CheapPasswords(f)
	h := servertest.New(f)
	user := h.CreateUser(email, password)
	a := demoapptest.Start(f, h, "app-a", "App A")
	kid, key, err := h.Srv.Keys.Signer("RS256")
	if err != nil {
		f.Fatal(err)
	}
	signIn := func(t testing.TB) string {
		b := servertest.NewBrowser(t)
		p := b.SignIn(a.URL+"/login", email, password)
		m := sidRe.FindStringSubmatch(p.Body)
		if m == nil {
			t.Fatalf("not signed in at the app: %s (%d)", p.URL, p.Status)
		}
		return m[1]
	}
	sid := signIn(f)
	used := map[string]bool{} // the jtis of accepted tokens
	f.Fuzz(func(t *testing.T, signed bool, typ, token string) {
		jti := rand.Text()
		now := time.Now()
		payload := token
		if signed {
			for k, v := range map[string]string{"iss": h.Issuer, "aud": a.ID, "sub": user.ID, "sid": sid, "jti": jti,
				"iat": strconv.FormatInt(now.Unix(), 10), "exp": strconv.FormatInt(now.Add(2*time.Minute).Unix(), 10)} {
				payload = strings.ReplaceAll(payload, "{"+k+"}", v)
			}
			opts := &jose.SignerOptions{}
			if typ != "" {
				opts = opts.WithType(jose.ContentType(typ))
			}
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: cryptosigner.Opaque(key), KeyID: kid}}, opts)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := s.Sign([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			if token, err = jws.CompactSerialize(); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.PostForm(a.URL+"/backchannel-logout", url.Values{"logout_token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			if !signed {
				t.Fatalf("a token the provider never signed was accepted: %q", token)
			}
			if why := notALogoutToken(typ, payload, h.Issuer, a.ID, now, used); why != "" {
				t.Fatalf("accepted, yet %s: typ %q, claims %s", why, typ, payload)
			}
			var c struct {
				ID string `json:"jti"`
			}
			json.Unmarshal([]byte(payload), &c)
			used[c.ID] = true
			if a.Sessions(sid) == 0 {
				sid = signIn(t) // the next input has a session to end
			}
		case http.StatusBadRequest:
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil || e["error"] != "invalid_request" {
				t.Fatalf("400 without the JSON error: %s", body)
			}
			if a.Sessions(sid) != 1 {
				t.Fatalf("a refused logout token (%s) ended the session", e["error_description"])
			}
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

// notALogoutToken says why claims, signed with the provider's key under
// typ, are not a logout token for aud that is valid at now ("" if they
// are one); used holds the jtis accepted before.
func notALogoutToken(typ, claims, iss, aud string, now time.Time, used map[string]bool) string {
	if t := strings.ToLower(typ); t != "logout+jwt" && t != "application/logout+jwt" {
		return "typ is not logout+jwt"
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal([]byte(claims), &c); err != nil {
		return "the claims are not a JSON object"
	}
	str := func(k string) string {
		var s string
		json.Unmarshal(c[k], &s)
		return s
	}
	num := func(k string) (float64, bool) {
		var n float64
		return n, json.Unmarshal(c[k], &n) == nil && c[k] != nil && string(c[k]) != "null"
	}
	var auds []string
	if json.Unmarshal(c["aud"], &auds) != nil {
		auds = []string{str("aud")}
	}
	var events map[string]json.RawMessage
	json.Unmarshal(c["events"], &events)
	exp, hasExp := num("exp")
	_, hasIat := num("iat")
	switch {
	case str("iss") != iss:
		return "iss is not the provider"
	case !slices.Contains(auds, aud):
		return "aud does not name the app"
	case !hasIat:
		return "there is no iat"
	case !hasExp || float64(now.Add(-2*time.Minute).Unix()) > exp:
		return "it has expired, or has no exp"
	case str("jti") == "" || used[str("jti")]:
		return "its jti is missing or used"
	case c["nonce"] != nil:
		return "it holds a nonce"
	case str("sub") == "" && str("sid") == "":
		return "it names neither sub nor sid"
	case !bytes.HasPrefix(bytes.TrimSpace(events[logoutEvent]), []byte("{")):
		return "the logout event is not an object"
	}
	return ""
}
