package users_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/idp/idp/internal/users"
)

// rangeAPI is a Pwned Passwords range API that knows the passwords in
// breached, and records what it was asked.
type rangeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	fail     bool
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func newRangeAPI(t *testing.T, breached map[string]int) *rangeAPI {
	t.Helper()
	api := &rangeAPI{}
	api.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.mu.Lock()
		api.requests = append(api.requests, r)
		fail := api.fail
		api.mu.Unlock()
		if fail {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		prefix, ok := strings.CutPrefix(r.URL.Path, "/range/")
		if !ok || len(prefix) != 5 {
			http.NotFound(w, r)
			return
		}
		var b strings.Builder
		// Padding: decoy suffixes with a count of 0, as Add-Padding asks.
		fmt.Fprintf(&b, "%s:0\r\n", strings.Repeat("0", 35))
		for pw, n := range breached {
			if h := sha1Hex(pw); h[:5] == prefix {
				fmt.Fprintf(&b, "%s:%d\r\n", h[5:], n)
			}
		}
		fmt.Fprintf(&b, "%s:0\r\n", strings.Repeat("F", 35))
		w.Write([]byte(b.String()))
	}))
	t.Cleanup(api.Close)
	return api
}

func (api *rangeAPI) asked() []*http.Request {
	api.mu.Lock()
	defer api.mu.Unlock()
	return append([]*http.Request(nil), api.requests...)
}

func TestBreachedPasswords_Count(t *testing.T) {
	const leaked, fresh = "leaked in a breach once", "never seen anywhere before"
	api := newRangeAPI(t, map[string]int{leaked: 42})
	b := &users.BreachedPasswords{URL: api.URL + "/"}

	if n, err := b.Count(t.Context(), leaked); err != nil || n != 42 {
		t.Errorf("Count(leaked) = %d, %v; want 42", n, err)
	}
	if n, err := b.Count(t.Context(), fresh); err != nil || n != 0 {
		t.Errorf("Count(fresh) = %d, %v; want 0", n, err)
	}
	// k-anonymity: only the first 5 hex digits of the SHA-1 leave.
	for i, r := range api.asked() {
		pw := []string{leaked, fresh}[i]
		if r.URL.Path != "/range/"+sha1Hex(pw)[:5] || r.URL.RawQuery != "" {
			t.Errorf("request %d went to %s, want /range/<5 hex digits>", i, r.URL)
		}
		if r.Header.Get("Add-Padding") != "true" {
			t.Errorf("request %d asks for no padding", i)
		}
	}

	api.mu.Lock()
	api.fail = true
	api.mu.Unlock()
	if _, err := b.Count(t.Context(), leaked); !errors.Is(err, users.ErrBreachCheck) {
		t.Errorf("a failing service: err = %v, want ErrBreachCheck", err)
	}
	down := &users.BreachedPasswords{URL: "http://127.0.0.1:1"}
	if _, err := down.Count(t.Context(), leaked); !errors.Is(err, users.ErrBreachCheck) {
		t.Errorf("an unreachable service: err = %v, want ErrBreachCheck", err)
	}
}

// TestStore_BreachedPasswords: a password the service knows is refused when
// chosen, and changes nothing; when the service cannot be asked the
// password is judged without it, and the failure is logged without it.
func TestStore_BreachedPasswords(t *testing.T) {
	const leaked = "leaked in a breach once"
	api := newRangeAPI(t, map[string]int{leaked: 3})
	s, _ := newStore(t)
	var logs bytes.Buffer
	s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s.Breached = &users.BreachedPasswords{URL: api.URL}
	ctx := t.Context()

	_, err := s.Create(ctx, users.NewUser{Email: "eve@example.com", Password: leaked})
	var pe *users.PolicyError
	if !errors.As(err, &pe) || !errors.Is(err, users.ErrWeakPassword) || !strings.Contains(pe.Reason, "data breach") {
		t.Fatalf("Create with a breached password: %v, want a PolicyError naming the breach", err)
	}
	if _, err := s.ByEmail(ctx, "eve@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("the refused user exists (%v)", err)
	}
	u, err := s.Create(ctx, users.NewUser{Email: "ada@example.com", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, u.ID, leaked, false); !errors.Is(err, users.ErrWeakPassword) {
		t.Fatalf("SetPassword with a breached password: %v, want ErrWeakPassword", err)
	}
	if same, err := s.SameAsCurrent(ctx, u.ID, password); err != nil || !same {
		t.Fatalf("a refused SetPassword changed the password (%v)", err)
	}

	api.mu.Lock()
	api.fail = true
	api.mu.Unlock()
	if err := s.SetPassword(ctx, u.ID, leaked, false); err != nil {
		t.Fatalf("with the service down SetPassword = %v, want the password judged without it", err)
	}
	if !strings.Contains(logs.String(), "without the breached-password check") {
		t.Errorf("the failed check is not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), leaked) || strings.Contains(logs.String(), sha1Hex(leaked)[5:]) {
		t.Errorf("the log names the password:\n%s", logs.String())
	}
}
