package passkey_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/passkey/passkeytest"
)

const (
	issuer = "https://login.example.com"
	origin = "https://login.example.com"
)

var t0 = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	s     *passkey.Service
	db    *dbtest.DB
	clock *clocktest.Clock
	ctx   context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := dbtest.New(t)
	clk := clocktest.New(t0)
	s, err := passkey.New(d.Pool, issuer, "idp test", clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s, db: d, clock: clk, ctx: context.Background()}
}

// person creates an account and returns it as a passkey.Person.
func (f *fixture) person(email string) passkey.Person {
	f.t.Helper()
	var id string
	if err := f.db.Pool.QueryRow(f.ctx, `INSERT INTO users (email, name) VALUES ($1, 'Test') RETURNING id::text`, email).Scan(&id); err != nil {
		f.t.Fatal(err)
	}
	return passkey.Person{ID: id, Email: email, Name: "Test " + email}
}

// register makes a passkey for p on auth through the whole ceremony.
func (f *fixture) register(p passkey.Person, auth *passkeytest.Authenticator) passkey.Passkey {
	f.t.Helper()
	bound := "session:" + uuid.NewString()
	opts, err := f.s.BeginRegistration(f.ctx, p, bound)
	if err != nil {
		f.t.Fatalf("begin registration: %v", err)
	}
	resp, err := auth.Create(opts)
	if err != nil {
		f.t.Fatalf("authenticator: %v", err)
	}
	pk, err := f.s.FinishRegistration(f.ctx, p, bound, resp, "", "Chrome on Linux")
	if err != nil {
		f.t.Fatalf("finish registration: %v", err)
	}
	return pk
}

// counter reads a credential's stored signature counter and last use.
func (f *fixture) counter(passkeyID string) (int64, *time.Time) {
	f.t.Helper()
	var n int64
	var used *time.Time
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT sign_count, last_used_at FROM passkey_credentials WHERE id = $1`, passkeyID).
		Scan(&n, &used); err != nil {
		f.t.Fatal(err)
	}
	return n, used
}

func (f *fixture) challenges() int {
	f.t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM passkey_challenges`).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestNew_IPAddressIssuerHasNoPasskeys(t *testing.T) {
	if _, err := passkey.New(nil, "http://127.0.0.1:8080", "idp", nil); !errors.Is(err, passkey.ErrUnavailable) {
		t.Fatalf("New with an IP address issuer = %v, want ErrUnavailable", err)
	}
	s, err := passkey.New(nil, "http://localhost:8080", "idp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.RPID() != "localhost" || s.Origin() != "http://localhost:8080" {
		t.Errorf("RP id %q, origin %q; want localhost and http://localhost:8080", s.RPID(), s.Origin())
	}
}

func TestService_Registration(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	bound := "session:" + uuid.NewString()
	opts, err := f.s.BeginRegistration(f.ctx, p, bound)
	if err != nil {
		t.Fatal(err)
	}
	// What the browser is asked for: a discoverable credential, user
	// verification, no attestation, for this RP and this account.
	var o struct {
		PublicKey struct {
			RP struct {
				ID string `json:"id"`
			} `json:"rp"`
			User struct {
				Name string `json:"name"`
			} `json:"user"`
			Attestation            string `json:"attestation"`
			AuthenticatorSelection struct {
				RequireResidentKey bool   `json:"requireResidentKey"`
				ResidentKey        string `json:"residentKey"`
				UserVerification   string `json:"userVerification"`
			} `json:"authenticatorSelection"`
			Timeout int `json:"timeout"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		t.Fatal(err)
	}
	sel := o.PublicKey.AuthenticatorSelection
	if o.PublicKey.RP.ID != "login.example.com" || o.PublicKey.User.Name != p.Email || o.PublicKey.Attestation != "none" ||
		!sel.RequireResidentKey || sel.ResidentKey != "required" || sel.UserVerification != "required" ||
		o.PublicKey.Timeout != int(passkey.DefaultChallengeTTL.Milliseconds()) {
		t.Errorf("creation options %s", opts)
	}
	auth := passkeytest.New(origin)
	resp, err := auth.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := f.s.FinishRegistration(f.ctx, p, bound, resp, "", "Firefox on Linux")
	if err != nil {
		t.Fatalf("finish registration: %v", err)
	}
	if pk.Name != "Firefox on Linux" || pk.UserID != p.ID || pk.BackupEligible || pk.Synced() || pk.AAGUID != uuid.Nil.String() {
		t.Errorf("registered %+v, want a device-bound passkey named after the browser", pk)
	}
	list, err := f.s.List(f.ctx, p.ID)
	if err != nil || len(list) != 1 || list[0].ID != pk.ID || !slices.Equal(list[0].Transports, []string{"internal", "hybrid"}) ||
		!list[0].CreatedAt.Equal(t0) || list[0].LastUsedAt != nil {
		t.Errorf("List = %+v, %v; want the new passkey, never used", list, err)
	}
	if n := f.challenges(); n != 0 {
		t.Errorf("%d challenges left after the ceremony, want 0", n)
	}

	t.Run("named after a known model, synced", func(t *testing.T) {
		q := f.person("grace@example.com")
		pm := passkeytest.New(origin)
		pm.AAGUID = uuid.MustParse("bada5566-a7aa-401f-bd96-45619a55120d")
		pm.Synced = true
		got := f.register(q, pm)
		if got.Name != "1Password" || !got.Synced() || !got.BackupState {
			t.Errorf("registered %+v, want 1Password, synced and backed up", got)
		}
	})
	t.Run("the name the person chose", func(t *testing.T) {
		q := f.person("chosen@example.com")
		b := "session:" + uuid.NewString()
		opts, _ := f.s.BeginRegistration(f.ctx, q, b)
		resp, _ := passkeytest.New(origin).Create(opts)
		got, err := f.s.FinishRegistration(f.ctx, q, b, resp, "  Work laptop ", "Chrome on Linux")
		if err != nil || got.Name != "Work laptop" {
			t.Errorf("registered %+v, %v; want the name Work laptop", got, err)
		}
	})
	t.Run("an authenticator already holding one is excluded", func(t *testing.T) {
		opts, err := f.s.BeginRegistration(f.ctx, p, bound)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auth.Create(opts); !errors.Is(err, passkeytest.ErrExcluded) {
			t.Errorf("a second registration on the same authenticator: %v, want it excluded", err)
		}
	})
}

// TestService_RegistrationRefused: every bad answer is refused with its
// own error and a message, and nothing is stored.
func TestService_RegistrationRefused(t *testing.T) {
	cases := []struct {
		name string
		// answer returns the response to finish for p with bound, from
		// options opts; finishAs is the person finishing (p when zero).
		answer func(f *fixture, opts []byte) []byte
		bound  string // finish with this binding ("" = the one begun)
		other  bool   // finish as another person
		want   error
	}{
		{name: "wrong origin", want: passkey.ErrOrigin, answer: func(f *fixture, opts []byte) []byte {
			return must(passkeytest.New(origin).CreateWith(opts, passkeytest.Tamper{Origin: "https://login.example.com.evil.test"}))
		}},
		{name: "wrong RP id", want: passkey.ErrRelyingParty, answer: func(f *fixture, opts []byte) []byte {
			return must(passkeytest.New(origin).CreateWith(opts, passkeytest.Tamper{RPID: "evil.test"}))
		}},
		{name: "user not verified", want: passkey.ErrNotVerified, answer: func(f *fixture, opts []byte) []byte {
			a := passkeytest.New(origin)
			a.SkipUserVerification = true
			return must(a.Create(opts))
		}},
		{name: "unknown challenge", want: passkey.ErrChallenge, answer: func(f *fixture, opts []byte) []byte {
			return must(passkeytest.New(origin).CreateWith(opts, passkeytest.Tamper{Challenge: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
		}},
		{name: "expired challenge", want: passkey.ErrExpired, answer: func(f *fixture, opts []byte) []byte {
			f.clock.Advance(passkey.DefaultChallengeTTL)
			return must(passkeytest.New(origin).Create(opts))
		}},
		{name: "challenge of another session", bound: "session:another", want: passkey.ErrBinding, answer: func(f *fixture, opts []byte) []byte {
			return must(passkeytest.New(origin).Create(opts))
		}},
		{name: "challenge of another person", other: true, want: passkey.ErrBinding, answer: func(f *fixture, opts []byte) []byte {
			return must(passkeytest.New(origin).Create(opts))
		}},
		{name: "not JSON", want: passkey.ErrMalformed, answer: func(f *fixture, opts []byte) []byte { return []byte("{nope") }},
		{name: "oversized", want: passkey.ErrMalformed, answer: func(f *fixture, opts []byte) []byte {
			return []byte(`{"id":"` + strings.Repeat("A", passkey.MaxResponseBytes) + `"}`)
		}},
		{name: "an assertion instead", want: passkey.ErrMalformed, answer: func(f *fixture, opts []byte) []byte {
			return []byte(`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA"}}`)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.person("ada@example.com")
			finisher := p
			if tc.other {
				finisher = f.person("eve@example.com")
			}
			bound := "session:" + uuid.NewString()
			opts, err := f.s.BeginRegistration(f.ctx, p, bound)
			if err != nil {
				t.Fatal(err)
			}
			resp := tc.answer(f, opts)
			finishBound := bound
			if tc.bound != "" {
				finishBound = tc.bound
			}
			_, err = f.s.FinishRegistration(f.ctx, finisher, finishBound, resp, "", "Chrome on Linux")
			if !errors.Is(err, tc.want) {
				t.Fatalf("finish = %v, want %v", err, tc.want)
			}
			if passkey.Message(err) == "" || !passkey.IsVerdict(err) {
				t.Errorf("%v has no message for the person", err)
			}
			for _, who := range []passkey.Person{p, finisher} {
				if list, _ := f.s.List(f.ctx, who.ID); len(list) != 0 {
					t.Errorf("a refused registration stored %+v", list)
				}
			}
		})
	}

	t.Run("replayed", func(t *testing.T) {
		f := newFixture(t)
		p := f.person("ada@example.com")
		bound := "session:" + uuid.NewString()
		opts, _ := f.s.BeginRegistration(f.ctx, p, bound)
		resp := must(passkeytest.New(origin).Create(opts))
		if _, err := f.s.FinishRegistration(f.ctx, p, bound, resp, "", "Chrome"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.FinishRegistration(f.ctx, p, bound, resp, "", "Chrome"); !errors.Is(err, passkey.ErrChallenge) {
			t.Errorf("the same answer again = %v, want ErrChallenge", err)
		}
	})
	t.Run("a failed answer spends the challenge", func(t *testing.T) {
		f := newFixture(t)
		p := f.person("ada@example.com")
		bound := "session:" + uuid.NewString()
		opts, _ := f.s.BeginRegistration(f.ctx, p, bound)
		bad := must(passkeytest.New(origin).CreateWith(opts, passkeytest.Tamper{Origin: "https://evil.test"}))
		if _, err := f.s.FinishRegistration(f.ctx, p, bound, bad, "", "Chrome"); !errors.Is(err, passkey.ErrOrigin) {
			t.Fatal(err)
		}
		good := must(passkeytest.New(origin).Create(opts))
		if _, err := f.s.FinishRegistration(f.ctx, p, bound, good, "", "Chrome"); !errors.Is(err, passkey.ErrChallenge) {
			t.Errorf("a right answer after a wrong one = %v, want ErrChallenge", err)
		}
	})
	t.Run("too many", func(t *testing.T) {
		f := newFixture(t)
		p := f.person("ada@example.com")
		for range passkey.MaxPerUser {
			f.register(p, passkeytest.New(origin))
		}
		if _, err := f.s.BeginRegistration(f.ctx, p, "session:x"); !errors.Is(err, passkey.ErrTooMany) {
			t.Errorf("begin with %d passkeys = %v, want ErrTooMany", passkey.MaxPerUser, err)
		}
	})
}

func TestService_SecondFactor(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	auth := passkeytest.New(origin)
	pk := f.register(p, auth)
	f.register(f.person("other@example.com"), passkeytest.New(origin))

	bound := "login-flow:1"
	opts, err := f.s.BeginAssertion(f.ctx, p.ID, bound)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		PublicKey struct {
			RPID             string `json:"rpId"`
			UserVerification string `json:"userVerification"`
			AllowCredentials []struct {
				ID string `json:"id"`
			} `json:"allowCredentials"`
		} `json:"publicKey"`
	}
	json.Unmarshal(opts, &o)
	if o.PublicKey.RPID != "login.example.com" || o.PublicKey.UserVerification != "required" || len(o.PublicKey.AllowCredentials) != 1 {
		t.Errorf("request options %s: want this RP, user verification, the person's one passkey", opts)
	}
	f.clock.Advance(time.Minute)
	resp := must(auth.Get(opts))
	a, err := f.s.FinishAssertion(f.ctx, bound, resp, p.ID)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	if a.UserID != p.ID || a.PasskeyID != pk.ID || !slices.Equal(a.Methods(), []string{"hwk", "pin"}) {
		t.Errorf("assertion %+v (methods %v), want %s's passkey, hwk and pin", a, a.Methods(), p.Email)
	}
	n, used := f.counter(pk.ID)
	if n != 1 || used == nil || !used.Equal(t0.Add(time.Minute)) {
		t.Errorf("after the sign-in the counter is %d, last used %v; want 1 and now", n, used)
	}

	t.Run("no passkey", func(t *testing.T) {
		q := f.person("none@example.com")
		if _, err := f.s.BeginAssertion(f.ctx, q.ID, bound); !errors.Is(err, passkey.ErrUnknownCredential) {
			t.Errorf("begin for a person without passkeys = %v, want ErrUnknownCredential", err)
		}
	})
}

func TestService_PasswordlessSignIn(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	auth := passkeytest.New(origin)
	auth.Synced, auth.NoCounter = true, true
	pk := f.register(p, auth)

	for _, conditional := range []bool{false, true} {
		opts, err := f.s.BeginSignIn(f.ctx, "login-flow:2", conditional)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			Mediation string `json:"mediation"`
			PublicKey struct {
				AllowCredentials []any  `json:"allowCredentials"`
				UserVerification string `json:"userVerification"`
			} `json:"publicKey"`
		}
		json.Unmarshal(opts, &o)
		wantMediation := ""
		if conditional {
			wantMediation = "conditional"
		}
		if o.Mediation != wantMediation || len(o.PublicKey.AllowCredentials) != 0 || o.PublicKey.UserVerification != "required" {
			t.Errorf("options %s: want mediation %q, no credentials listed, user verification", opts, wantMediation)
		}
		a, err := f.s.FinishAssertion(f.ctx, "login-flow:2", must(auth.Get(opts)), "")
		if err != nil {
			t.Fatalf("finish (conditional %v): %v", conditional, err)
		}
		if a.UserID != p.ID || a.PasskeyID != pk.ID || !slices.Equal(a.Methods(), []string{"swk", "pin"}) {
			t.Errorf("assertion %+v (methods %v), want %s, swk and pin", a, a.Methods(), p.Email)
		}
	}
	if n, _ := f.counter(pk.ID); n != 0 {
		t.Errorf("counter %d, want 0 for an authenticator that keeps none", n)
	}
}

// TestService_AssertionRefused: each bad answer is refused with its own
// error and a message for the person, and the passkey is not marked used.
func TestService_AssertionRefused(t *testing.T) {
	type setup struct {
		f      *fixture
		p      passkey.Person
		auth   *passkeytest.Authenticator
		pk     passkey.Passkey
		opts   []byte // second-factor options for p, bound to "flow"
		signIn []byte // passwordless options, bound to "flow"
	}
	cases := []struct {
		name string
		// answer returns the response and the user the finish wants.
		answer func(s setup) (resp []byte, want string)
		bound  string
		err    error
	}{
		{name: "counter going backwards", err: passkey.ErrCounter, answer: func(s setup) ([]byte, string) {
			// Two sign-ins take the counter to 2; a copy of the key made
			// before them answers next, with 1.
			s.f.finish(s.opts, s.auth, s.p.ID)
			s.f.finish(s.f.beginAssertion(s.p.ID), s.auth, s.p.ID)
			s.auth.Credentials()[0].Counter = 0
			return must(s.auth.Get(s.f.beginAssertion(s.p.ID))), s.p.ID
		}},
		{name: "counter not moving", err: passkey.ErrCounter, answer: func(s setup) ([]byte, string) {
			s.f.finish(s.opts, s.auth, s.p.ID)
			s.auth.Credentials()[0].Counter = 0 // the next answer sends 1 again
			return must(s.auth.Get(s.f.beginAssertion(s.p.ID))), s.p.ID
		}},
		{name: "credential of another user", err: passkey.ErrWrongUser, answer: func(s setup) ([]byte, string) {
			eve := s.f.person("eve@example.com")
			evesAuth := passkeytest.New(origin)
			s.f.register(eve, evesAuth)
			return must(evesAuth.GetWith(s.opts, passkeytest.Tamper{Credential: evesAuth.Credentials()[0]})), s.p.ID
		}},
		{name: "passwordless, another user than the one signing in", err: passkey.ErrWrongUser, answer: func(s setup) ([]byte, string) {
			eve := s.f.person("eve@example.com")
			return must(s.auth.Get(s.signIn)), eve.ID
		}},
		{name: "wrong origin", err: passkey.ErrOrigin, answer: func(s setup) ([]byte, string) {
			return must(s.auth.GetWith(s.signIn, passkeytest.Tamper{Origin: "https://login-example.com"})), ""
		}},
		{name: "wrong RP id", err: passkey.ErrRelyingParty, answer: func(s setup) ([]byte, string) {
			return must(s.auth.GetWith(s.opts, passkeytest.Tamper{RPID: "example.com"})), s.p.ID
		}},
		{name: "expired challenge", err: passkey.ErrExpired, answer: func(s setup) ([]byte, string) {
			s.f.clock.Advance(passkey.DefaultChallengeTTL + time.Second)
			return must(s.auth.Get(s.signIn)), ""
		}},
		{name: "replayed challenge", err: passkey.ErrChallenge, answer: func(s setup) ([]byte, string) {
			resp := must(s.auth.Get(s.opts))
			if _, err := s.f.s.FinishAssertion(s.f.ctx, "flow", resp, s.p.ID); err != nil {
				s.f.t.Fatal(err)
			}
			return resp, s.p.ID
		}},
		{name: "challenge of another sign-in", bound: "another flow", err: passkey.ErrBinding, answer: func(s setup) ([]byte, string) {
			return must(s.auth.Get(s.signIn)), ""
		}},
		{name: "challenge of a registration", err: passkey.ErrBinding, answer: func(s setup) ([]byte, string) {
			opts, err := s.f.s.BeginRegistration(s.f.ctx, s.p, "flow")
			if err != nil {
				s.f.t.Fatal(err)
			}
			var o struct {
				PublicKey struct {
					Challenge string `json:"challenge"`
					RP        struct {
						ID string `json:"id"`
					} `json:"rp"`
				} `json:"publicKey"`
			}
			json.Unmarshal(opts, &o)
			return must(s.auth.GetWith(s.signIn, passkeytest.Tamper{Challenge: o.PublicKey.Challenge})), ""
		}},
		{name: "user not verified", err: passkey.ErrNotVerified, answer: func(s setup) ([]byte, string) {
			s.auth.SkipUserVerification = true
			return must(s.auth.Get(s.signIn)), ""
		}},
		{name: "removed passkey", err: passkey.ErrUnknownCredential, answer: func(s setup) ([]byte, string) {
			if _, _, err := s.f.s.Remove(s.f.ctx, s.p.ID, s.pk.ID); err != nil {
				s.f.t.Fatal(err)
			}
			return must(s.auth.Get(s.signIn)), ""
		}},
		{name: "disabled account", err: passkey.ErrDisabled, answer: func(s setup) ([]byte, string) {
			if _, err := s.f.db.Pool.Exec(s.f.ctx, `UPDATE users SET disabled_at = now() WHERE id = $1`, s.p.ID); err != nil {
				s.f.t.Fatal(err)
			}
			return must(s.auth.Get(s.signIn)), ""
		}},
		{name: "bad signature", err: passkey.ErrInvalid, answer: func(s setup) ([]byte, string) {
			resp := must(s.auth.Get(s.signIn))
			var m map[string]any
			json.Unmarshal(resp, &m)
			m["response"].(map[string]any)["signature"] = "MEUCIQDu3Y0ZfXVnOEi7fKXxZXdAMcTU4HXHyLVbHU2RqxIdrQIgNf2u7ux4m9kfySd7E8nQvmCK-qvTO6Ljd-Ka6ojC5Gk"
			out, _ := json.Marshal(m)
			return out, ""
		}},
		{name: "not JSON", err: passkey.ErrMalformed, answer: func(s setup) ([]byte, string) { return []byte("null"), "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := setup{f: f, p: f.person("ada@example.com"), auth: passkeytest.New(origin)}
			s.pk = f.register(s.p, s.auth)
			s.opts = f.beginAssertion(s.p.ID)
			var err error
			if s.signIn, err = f.s.BeginSignIn(f.ctx, "flow", false); err != nil {
				t.Fatal(err)
			}
			resp, want := tc.answer(s)
			removed := tc.err == passkey.ErrUnknownCredential
			var countBefore int64
			var usedBefore *time.Time
			if !removed {
				countBefore, usedBefore = f.counter(s.pk.ID)
			}
			bound := "flow"
			if tc.bound != "" {
				bound = tc.bound
			}
			a, err := f.s.FinishAssertion(f.ctx, bound, resp, want)
			if !errors.Is(err, tc.err) {
				t.Fatalf("finish = %+v, %v; want %v", a, err, tc.err)
			}
			if passkey.Message(err) == "" || !passkey.IsVerdict(err) {
				t.Errorf("%v has no message for the person", err)
			}
			if removed {
				return
			}
			if n, used := f.counter(s.pk.ID); n != countBefore || !sameTime(used, usedBefore) {
				t.Errorf("a refused answer moved the counter to %d (from %d) and last use to %v", n, countBefore, used)
			}
		})
	}
}

// TestService_ConcurrentAnswersWithOneCounter: two answers that carry the
// same counter (a copied key used at once on two machines) race; one
// passes, the other is refused as a counter that did not move.
func TestService_ConcurrentAnswersWithOneCounter(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	auth := passkeytest.New(origin)
	f.register(p, auth)
	opts1, opts2 := f.beginAssertion(p.ID), f.beginAssertion(p.ID)
	r1 := must(auth.Get(opts1))
	auth.Credentials()[0].Counter = 0
	r2 := must(auth.Get(opts2))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range [][]byte{r1, r2} {
		wg.Go(func() { _, errs[i] = f.s.FinishAssertion(f.ctx, "flow", r, p.ID) })
	}
	wg.Wait()
	ok, counter := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, passkey.ErrCounter):
			counter++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 || counter != 1 {
		t.Errorf("%d passed and %d were refused for their counter; want one each", ok, counter)
	}
}

func TestService_RenameAndRemove(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	eve := f.person("eve@example.com")
	first := f.register(p, passkeytest.New(origin))
	second := f.register(p, passkeytest.New(origin))
	evesKey := f.register(eve, passkeytest.New(origin))

	if got, err := f.s.Rename(f.ctx, p.ID, first.ID, " Phone "); err != nil || got.Name != "Phone" {
		t.Errorf("rename = %+v, %v; want Phone", got, err)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", passkey.MaxNameLength+1), "two\nlines"} {
		if _, err := f.s.Rename(f.ctx, p.ID, first.ID, bad); !errors.Is(err, passkey.ErrInvalidName) {
			t.Errorf("rename to %q = %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := f.s.Rename(f.ctx, p.ID, evesKey.ID, "Mine now"); !errors.Is(err, passkey.ErrNotFound) {
		t.Errorf("renaming another person's passkey = %v, want ErrNotFound", err)
	}
	if _, _, err := f.s.Remove(f.ctx, p.ID, evesKey.ID); !errors.Is(err, passkey.ErrNotFound) {
		t.Errorf("removing another person's passkey = %v, want ErrNotFound", err)
	}
	if _, _, err := f.s.Remove(f.ctx, p.ID, "not-a-uuid"); !errors.Is(err, passkey.ErrNotFound) {
		t.Errorf("removing a malformed id = %v, want ErrNotFound", err)
	}
	removed, left, err := f.s.Remove(f.ctx, p.ID, first.ID)
	if err != nil || removed.Name != "Phone" || left != 1 {
		t.Errorf("remove = %+v, %d left, %v; want Phone removed, 1 left", removed, left, err)
	}
	if on, _ := f.s.Registered(f.ctx, p.ID); !on {
		t.Error("Registered is false with one passkey left")
	}
	if n, err := f.s.RemoveAll(f.ctx, p.ID); err != nil || n != 1 {
		t.Errorf("RemoveAll = %d, %v; want the 1 left (%s)", n, err, second.ID)
	}
	if on, _ := f.s.Registered(f.ctx, p.ID); on {
		t.Error("Registered is true after RemoveAll")
	}
	if list, _ := f.s.List(f.ctx, eve.ID); len(list) != 1 {
		t.Errorf("the other person's passkeys: %+v, want theirs untouched", list)
	}
}

func (f *fixture) beginAssertion(userID string) []byte {
	f.t.Helper()
	opts, err := f.s.BeginAssertion(f.ctx, userID, "flow")
	if err != nil {
		f.t.Fatal(err)
	}
	return opts
}

func (f *fixture) finish(opts []byte, auth *passkeytest.Authenticator, userID string) {
	f.t.Helper()
	if _, err := f.s.FinishAssertion(f.ctx, "flow", must(auth.Get(opts)), userID); err != nil {
		f.t.Fatal(err)
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestService_AssertionRoundTrips: finishing a sign-in costs two round
// trips: the challenge spent together with the credential read, and the
// counter recorded.
func TestService_AssertionRoundTrips(t *testing.T) {
	f := newFixture(t)
	p := f.person("ada@example.com")
	auth := passkeytest.New(origin)
	f.register(p, auth)
	pool, trips := dbtest.TracedPool(t, f.db.URL)
	traced, err := passkey.New(pool, issuer, "idp test", f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var opts []byte
	if n := trips.Count(func() { opts, err = traced.BeginSignIn(f.ctx, "flow", true) }); err != nil || n != 1 {
		t.Errorf("begin: %d round trips (%v), want 1", n, err)
	}
	resp := must(auth.Get(opts))
	if n := trips.Count(func() { _, err = traced.FinishAssertion(f.ctx, "flow", resp, "") }); err != nil || n != 2 {
		t.Errorf("finish: %d round trips (%v), want 2", n, err)
	}
}
