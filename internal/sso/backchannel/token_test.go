package backchannel

import (
	"errors"
	"testing"

	"github.com/idp/idp/internal/sso/backchannel/logouttest"
	"github.com/idp/idp/internal/sso/keys"
)

func TestSignLogoutToken(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		alg        string
		subject    string
		sid        string
		includeSID bool
		wantErr    error
	}{
		{name: "RS256 with sid", alg: keys.RS256, subject: "user-1", sid: "sid-1", includeSID: true},
		{name: "ES256 with sid", alg: keys.ES256, subject: "user-1", sid: "sid-1", includeSID: true},
		{name: "sub only", alg: keys.RS256, subject: "user-1", sid: "sid-1", includeSID: false},
		{name: "sid only", alg: keys.RS256, sid: "sid-1", includeSID: true},
		{name: "neither sub nor sid", alg: keys.RS256, sid: "sid-1", includeSID: false, wantErr: ErrInvalidToken},
		{name: "empty sid requested", alg: keys.RS256, subject: "user-1", includeSID: true, wantErr: ErrInvalidToken},
		{name: "unsupported alg", alg: "HS256", subject: "user-1", sid: "sid-1", includeSID: true, wantErr: keys.ErrUnsupportedAlg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, jti, err := SignLogoutToken(e.keys, tt.alg, issuer, "app", tt.subject, tt.sid, tt.includeSID, e.now())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := logouttest.Verify(e.app(), token)
			if err != nil {
				t.Fatalf("token does not verify: %v", err)
			}
			wantKid, _, _ := e.keys.Signer(tt.alg)
			if got.Alg != tt.alg || got.Kid != wantKid {
				t.Errorf("header alg %s kid %s, want %s %s", got.Alg, got.Kid, tt.alg, wantKid)
			}
			c := got.All
			if c["aud"] != "app" || c["jti"] != jti {
				t.Errorf("aud %v jti %v, want app and the returned %s", c["aud"], c["jti"], jti)
			}
			if sub, _ := c["sub"].(string); sub != tt.subject {
				t.Errorf("sub %q, want %q", sub, tt.subject)
			}
			wantSID := ""
			if tt.includeSID {
				wantSID = tt.sid
			}
			if sid, _ := c["sid"].(string); sid != wantSID {
				t.Errorf("sid %q, want %q", sid, wantSID)
			}
		})
	}

	t.Run("jti is fresh per token", func(t *testing.T) {
		_, a, err := SignLogoutToken(e.keys, keys.RS256, issuer, "app", "user-1", "sid-1", true, e.now())
		if err != nil {
			t.Fatal(err)
		}
		_, b, err := SignLogoutToken(e.keys, keys.RS256, issuer, "app", "user-1", "sid-1", true, e.now())
		if err != nil {
			t.Fatal(err)
		}
		if a == b || len(a) < 22 {
			t.Errorf("jtis %q and %q: want distinct values of at least 128 bits", a, b)
		}
	})
}
