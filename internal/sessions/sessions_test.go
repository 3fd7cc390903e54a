package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/idp/idp/internal/clocktest"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
	"github.com/idp/idp/internal/outbox"
)

func newManager(t *testing.T, secure bool) (*Manager, *clocktest.Clock, string) {
	d := dbtest.New(t)
	clk := clocktest.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	var userID string
	if err := d.Pool.QueryRow(context.Background(), `INSERT INTO users (email) VALUES ('a@example.com') RETURNING id`).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	return &Manager{Pool: d.Pool, Now: clk.Now, IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour,
		Secure: secure, CSRFKey: []byte("k")}, clk, userID
}

// create makes a session as the sign-in does: queued in a unit of work,
// committed before the cookie is used.
func create(t testing.TB, m *Manager, w http.ResponseWriter, n NewSession) Session {
	t.Helper()
	var s Session
	err := db.Pipelined(context.Background(), m.Pool, func(ctx context.Context) error {
		s = m.QueueCreate(ctx, w, n)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// addClient records an app's session as the authorization endpoint does.
func addClient(ctx context.Context, m *Manager, sid, clientID string) error {
	return db.Pipelined(ctx, m.Pool, func(ctx context.Context) error {
		m.QueueAddClient(ctx, sid, clientID)
		return nil
	})
}

// request returns a request carrying the cookie that w set.
func request(w *httptest.ResponseRecorder) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	return r
}

func TestManager_Cookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		m, _, user := newManager(t, secure)
		w := httptest.NewRecorder()
		s := create(t, m, w, NewSession{UserID: user, AuthTime: m.Now(), AMR: []string{AMRPassword}, ACR: ACRPassword})
		c := w.Result().Cookies()[0]
		wantName := map[bool]string{false: "idp_session", true: "__Host-idp_session"}[secure]
		if c.Name != wantName || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.Path != "/" || c.Domain != "" {
			t.Errorf("secure=%v: cookie %+v", secure, c)
		}
		if len(c.Value) < 43 || c.Value == s.ID {
			t.Errorf("cookie value %q is short or is the sid", c.Value)
		}
		stored := dbtest.Value[[]byte](t, m.Pool, `SELECT cookie_hash FROM sso_sessions WHERE id = $1`, s.ID)
		if string(stored) == c.Value || string(stored) != string(HashToken(c.Value)) {
			t.Error("the cookie value is not stored as its hash")
		}
	}
}

func TestManager_Current(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		advance []time.Duration // requests at these offsets; the last must fail or pass
		want    error
	}{
		{"fresh", []time.Duration{0}, nil},
		{"activity slides the idle timeout", []time.Duration{50 * time.Minute, 100 * time.Minute, 150 * time.Minute}, nil},
		{"idle timeout", []time.Duration{61 * time.Minute}, ErrNoSession},
		{"absolute timeout despite activity", []time.Duration{50 * time.Minute, 100 * time.Minute, 150 * time.Minute,
			200 * time.Minute, 250 * time.Minute, 300 * time.Minute, 350 * time.Minute, 400 * time.Minute, 450 * time.Minute, 481 * time.Minute}, ErrNoSession},
	}
	// The timeouts hold whether or not the person asked to be remembered:
	// "keep me signed in" changes only how long the browser keeps the
	// cookie.
	for _, remember := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s, remember=%v", tc.name, remember), func(t *testing.T) {
				m, clk, user := newManager(t, false)
				start := clk.Now()
				w := httptest.NewRecorder()
				create(t, m, w, NewSession{UserID: user, AuthTime: start, Remember: remember})
				var err error
				for _, d := range tc.advance {
					clk.Set(start.Add(d))
					_, err = m.Current(ctx, request(w))
				}
				if err != tc.want {
					t.Fatalf("Current = %v, want %v", err, tc.want)
				}
			})
		}
	}

	t.Run("revoked", func(t *testing.T) {
		m, _, user := newManager(t, false)
		w := httptest.NewRecorder()
		s := create(t, m, w, NewSession{UserID: user, AuthTime: m.Now()})
		if _, err := m.Revoke(ctx, Revocation{SIDs: []string{s.ID}, Reason: ReasonLogout}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Current(ctx, request(w)); err != ErrNoSession {
			t.Fatalf("Current after revoke = %v", err)
		}
	})

	t.Run("disabled user", func(t *testing.T) {
		m, _, user := newManager(t, false)
		w := httptest.NewRecorder()
		create(t, m, w, NewSession{UserID: user, AuthTime: m.Now()})
		dbtest.Exec(t, m.Pool, `UPDATE users SET disabled_at = now()`)
		if _, err := m.Current(ctx, request(w)); err != ErrNoSession {
			t.Fatalf("Current for a disabled user = %v", err)
		}
	})
}

func TestManager_Revoke(t *testing.T) {
	ctx := context.Background()
	t.Run("someone else's session is untouched", func(t *testing.T) {
		m, _, user := newManager(t, false)
		other := dbtest.Value[string](t, m.Pool, `INSERT INTO users (email) VALUES ('b@example.com') RETURNING id`)
		s := create(t, m, httptest.NewRecorder(), NewSession{UserID: other, AuthTime: m.Now()})
		res, err := m.Revoke(ctx, Revocation{SIDs: []string{s.ID}, UserID: user, Reason: ReasonUserSignOut})
		if err != nil || res.Sessions != 0 {
			t.Fatalf("Revoke = %+v, %v; want nothing revoked", res, err)
		}
	})
	t.Run("idempotent and audited", func(t *testing.T) {
		m, _, user := newManager(t, false)
		create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		for i, want := range []int{1, 0} {
			res, err := m.Revoke(ctx, Revocation{UserID: user, Reason: ReasonAdminRevoke, Actor: "admin:x"})
			if err != nil || res.Sessions != want {
				t.Fatalf("call %d: %+v, %v", i, res, err)
			}
		}
		n := dbtest.Value[int](t, m.Pool, `SELECT count(*) FROM audit_log WHERE action = 'sessions.revoke' AND actor = 'admin:x'`)
		if n != 2 {
			t.Fatalf("%d audit records, want 2", n)
		}
	})
	t.Run("a malformed sid names no session, not all of them", func(t *testing.T) {
		m, _, user := newManager(t, false)
		create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		for _, rev := range []Revocation{
			{SIDs: []string{"not-a-uuid"}, UserID: user},
			{SIDs: []string{"' OR true --"}},
			{UserID: "nope"},
		} {
			res, err := m.Revoke(ctx, rev)
			if err != nil || res.Sessions != 0 {
				t.Fatalf("Revoke(%+v) = %+v, %v; want nothing revoked", rev, res, err)
			}
		}
	})
	t.Run("hooks see what ended and commit or fail with it", func(t *testing.T) {
		m, _, user := newManager(t, false)
		a := create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		b := create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		var seen []Ended
		fail := true
		m.OnRevoke = []func(ctx context.Context, e Ended) error{func(ctx context.Context, e Ended) error {
			seen = append(seen, e)
			if fail {
				return errors.New("the hook failed")
			}
			return outbox.Queue(ctx, m.Pool, e.At, outbox.Message{Kind: "signal", Subject: e.Sessions[0].UserID, Reason: e.Reason})
		}}
		if _, err := m.Revoke(ctx, Revocation{SIDs: []string{a.ID}, Reason: ReasonUserSignOut}); err == nil {
			t.Fatal("Revoke succeeded with a failing hook")
		}
		var live int
		if err := m.Pool.QueryRow(ctx, `SELECT count(*) FROM sso_sessions WHERE revoked_at IS NULL`).Scan(&live); err != nil || live != 2 {
			t.Fatalf("%d live sessions after a failed hook (%v), want 2: the revocation rolls back", live, err)
		}
		fail = false
		res, err := m.Revoke(ctx, Revocation{UserID: user, Reason: ReasonAdminRevoke})
		if err != nil || res.Sessions != 2 {
			t.Fatalf("Revoke = %+v, %v", res, err)
		}
		last := seen[len(seen)-1]
		got := map[string]string{}
		for _, s := range last.Sessions {
			got[s.SID] = s.UserID
		}
		if len(got) != 2 || got[a.ID] != user || got[b.ID] != user || last.Reason != ReasonAdminRevoke || !last.At.Equal(m.Now()) {
			t.Errorf("the hook saw %+v", last)
		}
		var queued string
		if err := m.Pool.QueryRow(ctx, `SELECT subject || ' ' || reason FROM outbox WHERE kind = 'signal'`).Scan(&queued); err != nil ||
			queued != user+" "+ReasonAdminRevoke {
			t.Errorf("the hook's message: %q, %v", queued, err)
		}
		// Nothing ended, nothing to tell.
		n := len(seen)
		if _, err := m.Revoke(ctx, Revocation{UserID: user, Reason: ReasonAdminRevoke}); err != nil || len(seen) != n {
			t.Errorf("a revocation that ended nothing ran the hooks: %v", err)
		}
	})
	t.Run("names nothing", func(t *testing.T) {
		m, _, _ := newManager(t, false)
		if _, err := m.Revoke(ctx, Revocation{Reason: ReasonAdminRevoke}); err == nil {
			t.Fatal("a revocation naming no session or user succeeded")
		}
	})
}

func TestManager_AddClient(t *testing.T) {
	ctx := context.Background()
	m, _, user := newManager(t, false)
	if _, err := m.Pool.Exec(ctx, `INSERT INTO oauth_clients (id, name, backchannel_logout_uri)
		VALUES ('app', 'App', 'https://app.example/bc')`); err != nil {
		t.Fatal(err)
	}
	clients := func(sid string) int {
		var n int
		if err := m.Pool.QueryRow(ctx, `SELECT count(*) FROM client_sessions WHERE sid = $1`, sid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Run("a revoked session takes no app", func(t *testing.T) {
		s := create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		if _, err := m.Revoke(ctx, Revocation{SIDs: []string{s.ID}, Reason: ReasonUserSignOut}); err != nil {
			t.Fatal(err)
		}
		if err := addClient(ctx, m, s.ID, "app"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("AddClient on a revoked session: %v, want ErrNoSession", err)
		}
		if n := clients(s.ID); n != 0 {
			t.Errorf("%d client sessions recorded for a revoked session", n)
		}
	})
	t.Run("a revocation at the same moment waits and tells the app", func(t *testing.T) {
		s := create(t, m, httptest.NewRecorder(), NewSession{UserID: user, AuthTime: m.Now()})
		revoked := make(chan Result, 1)
		err := db.Tx(ctx, m.Pool, func(ctx context.Context) error {
			m.QueueAddClient(ctx, s.ID, "app")
			u, _ := db.From(ctx)
			if err := u.Send(ctx); err != nil {
				return err
			}
			go func() {
				res, err := m.Revoke(context.Background(), Revocation{SIDs: []string{s.ID}, Reason: ReasonUserSignOut})
				if err != nil {
					t.Error(err)
				}
				revoked <- res
			}()
			select {
			case res := <-revoked:
				t.Fatalf("revocation finished (%+v) while the app's session was being recorded", res)
			case <-time.After(200 * time.Millisecond):
			}
			return nil // commit
		})
		if err != nil {
			t.Fatal(err)
		}
		if res := <-revoked; res.Sessions != 1 || res.Notifications != 1 {
			t.Errorf("revocation after the app joined = %+v, want 1 session and 1 notification", res)
		}
	})
}

// TestManager_ShortIdleTimeout: activity keeps a session alive however
// short its idle timeout is. The last-seen time used to move at most once
// a minute, so with a timeout of a minute or less an active person was
// signed out anyway.
func TestManager_ShortIdleTimeout(t *testing.T) {
	ctx := context.Background()
	m, clk, user := newManager(t, false)
	m.IdleTimeout = 8 * time.Second
	w := httptest.NewRecorder()
	create(t, m, w, NewSession{UserID: user, AuthTime: m.Now()})
	for i := range 10 {
		clk.Advance(5 * time.Second)
		if _, err := m.Current(ctx, request(w)); err != nil {
			t.Fatalf("request %d, %s after the last: %v; activity must slide an 8s idle timeout", i+1, 5*time.Second, err)
		}
	}
	clk.Advance(9 * time.Second)
	if _, err := m.Current(ctx, request(w)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after 9s without activity: %v, want ErrNoSession", err)
	}
}

// TestManager_RememberCookie: without "keep me signed in" the cookie is a
// browser-session cookie (no Expires); with it, it lasts until the
// session's absolute expiry.
func TestManager_RememberCookie(t *testing.T) {
	for _, remember := range []bool{false, true} {
		m, _, user := newManager(t, false)
		w := httptest.NewRecorder()
		s := create(t, m, w, NewSession{UserID: user, AuthTime: m.Now(), Remember: remember})
		c := w.Result().Cookies()[0]
		switch {
		case !remember && (!c.Expires.IsZero() || c.MaxAge != 0):
			t.Errorf("not remembered: cookie has Expires %v / Max-Age %d, want a browser-session cookie", c.Expires, c.MaxAge)
		case remember && !c.Expires.Equal(s.AbsoluteExpiresAt.Truncate(time.Second)):
			t.Errorf("remembered: cookie expires %v, want the absolute expiry %v", c.Expires, s.AbsoluteExpiresAt)
		}
		got, err := m.Current(context.Background(), request(w))
		if err != nil || got.Remember != remember {
			t.Errorf("Current = %+v, %v; want Remember %v", got.Remember, err, remember)
		}
	}
}
