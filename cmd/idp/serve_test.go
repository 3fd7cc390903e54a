package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/idp/idp/internal/clients"
	"github.com/idp/idp/internal/dbtest"
)

// freeAddr returns a loopback address nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening waits for the provider that `idp serve` (ending on done)
// starts to listen on addr.
func waitListening(t *testing.T, addr string, done chan error) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before listening: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not listen in 20 s")
		}
	}
}

// TestRun_ServeMetricsAddr runs `idp serve` with --metrics-addr and a
// scrape token from the environment: /metrics moves to that listener and
// asks for the token, the probes are on both, the provider only on the main
// one, and cancelling the context shuts both down cleanly.
func TestRun_ServeMetricsAddr(t *testing.T) {
	d := dbtest.New(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	const scrapeToken = "a-scrape-token-of-more-than-32-characters"
	env := map[string]string{
		"IDP_DATABASE_URL":  d.URL,
		"IDP_SECRET":        strings.Repeat("s", 40),
		"IDP_METRICS_ADDR":  metricsAddr,
		"IDP_METRICS_TOKEN": scrapeToken,
		"IDP_MEMORY_LIMIT":  "off", // leave the test process's GC alone
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--issuer", "http://localhost:8080", "--addr", addr},
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	get := func(url string, token ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for _, tok := range token {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitListening(t, addr, done)

	if code, body := get("http://"+metricsAddr+"/metrics", scrapeToken); code != http.StatusOK || !strings.Contains(body, "\nidp_db_up 1\n") {
		t.Errorf("metrics listener /metrics: %d, idp_db_up 1 missing:\n%.300s", code, body)
	}
	if code, body := get("http://" + metricsAddr + "/metrics"); code != http.StatusUnauthorized || strings.Contains(body, "idp_db_up") {
		t.Errorf("metrics listener /metrics without the token: %d, want 401 and no metrics:\n%.300s", code, body)
	}
	if code, _ := get("http://" + addr + "/metrics"); code != http.StatusNotFound {
		t.Errorf("main listener /metrics: %d, want 404", code)
	}
	for _, a := range []string{addr, metricsAddr} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, _ := get("http://" + a + p); code != http.StatusOK {
				t.Errorf("%s%s: %d, want 200", a, p, code)
			}
		}
	}
	if code, _ := get("http://" + metricsAddr + "/.well-known/openid-configuration"); code != http.StatusNotFound {
		t.Errorf("metrics listener serves the provider: %d, want 404", code)
	}
	if code, _ := get("http://" + addr + "/.well-known/openid-configuration"); code != http.StatusOK {
		t.Errorf("main listener discovery: %d, want 200", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down in 30 s")
	}
	done <- nil // for the cleanup
	for _, a := range []string{addr, metricsAddr} {
		if _, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			t.Errorf("%s still accepts connections after shutdown", a)
		}
	}
}

func TestRun_ServeBreachedPasswordsURL(t *testing.T) {
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--breached-passwords-url", "api.pwnedpasswords.com").
		check(t, 2, `--breached-passwords-url: must be an http(s) URL such as https://api.pwnedpasswords.com`)
}

func TestRun_ServeMetricsTokenTooShort(t *testing.T) {
	runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", "serve", "--issuer", "http://localhost:8080",
		"--secret", strings.Repeat("s", 32), "--metrics-token", "guessable").
		check(t, 2, "--metrics-token: must be at least 32 random characters")
}

func TestRun_ServeMailSettings(t *testing.T) {
	serve := func(extra ...string) result {
		return runCLI(t, "postgres://nobody@127.0.0.1:1/nowhere", "", append([]string{"serve", "--issuer", "http://localhost:8080",
			"--secret", strings.Repeat("s", 32)}, extra...)...)
	}
	serve("--smtp-url", "smtp://idp:hunter2-smtp@mail.example.com?tls=none", "--mail-from", "login@example.com").
		check(t, 2, "--smtp-url: tls=none is allowed only to a loopback host")
	serve("--smtp-url", "smtp://mail.example.com", "--mail-from", "not an address").
		check(t, 2, "--mail-from: must be an address")
	serve("--smtp-url", "smtp://mail.example.com").check(t, 2, "IDP_MAIL_FROM: is required when IDP_SMTP_URL is set")
	if r := serve("--smtp-url", "smtp://idp:hunter2-smtp@mail.example.com?tls=none", "--mail-from", "login@example.com"); strings.Contains(r.stderr+r.message, "hunter2-smtp") {
		t.Errorf("the SMTP password is in the error: %s", r.stderr+r.message)
	}
}

// TestRun_ServeDeviceSettings: the device grant's code lifetime and poll
// interval are settings of idp serve, from a variable or a flag, and the
// device authorization endpoint answers with them; a bad one is named as
// the operator gave it.
func TestRun_ServeDeviceSettings(t *testing.T) {
	t.Run("mistakes", func(t *testing.T) {
		nowhere := "postgres://nobody@127.0.0.1:1/nowhere"
		base := []string{"serve", "--issuer", "http://localhost:8080", "--secret", strings.Repeat("s", 32)}
		for _, tc := range []struct {
			name string
			env  map[string]string
			args []string
			want string
		}{
			{"not a duration", map[string]string{"IDP_DEVICE_POLL_INTERVAL": "often"}, nil,
				`IDP_DEVICE_POLL_INTERVAL: must be a positive duration like 8h or 30m, not "often"`},
			{"too short a lifetime", map[string]string{"IDP_DEVICE_CODE_LIFETIME": "30s"}, nil,
				"IDP_DEVICE_CODE_LIFETIME: must be at least 1m"},
			{"a fraction of a second", nil, []string{"--device-poll-interval", "1500ms"},
				"--device-poll-interval: must be whole seconds"},
			{"zero", nil, []string{"--device-poll-interval", "0s"},
				"--device-poll-interval: must be a positive duration"},
			{"no shorter than the lifetime", map[string]string{"IDP_DEVICE_CODE_LIFETIME": "2m"}, []string{"--device-poll-interval", "2m"},
				"--device-poll-interval: must be shorter than the device code lifetime (2m0s)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env := map[string]string{"IDP_DATABASE_URL": nowhere}
				for k, v := range tc.env {
					env[k] = v
				}
				runEnv(t, env, append(base, tc.args...)...).check(t, 2, tc.want)
			})
		}
	})

	d := dbtest.New(t)
	if _, err := clients.NewStore(d.Pool).Create(context.Background(), clients.Client{ID: "tv", Public: true,
		GrantTypes: []string{clients.GrantDeviceCode}, Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	env := map[string]string{"IDP_DATABASE_URL": d.URL, "IDP_SECRET": strings.Repeat("s", 40), "IDP_MEMORY_LIMIT": "off",
		"IDP_DEVICE_CODE_LIFETIME": "3m"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--issuer", "http://localhost:8080", "--addr", addr, "--device-poll-interval", "2s"},
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitListening(t, addr, done)
	start := time.Now()
	da, err := (&oauth2.Config{ClientID: "tv", Endpoint: oauth2.Endpoint{DeviceAuthURL: "http://" + addr + "/oauth2/device/auth",
		AuthStyle: oauth2.AuthStyleInParams}}).DeviceAuth(context.Background())
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if da.Interval != 2 || da.Expiry.Before(start.Add(3*time.Minute-time.Second)) || da.Expiry.After(time.Now().Add(3*time.Minute+time.Second)) {
		t.Fatalf("interval %d, expiry in %s: want 2 and 3m", da.Interval, time.Until(da.Expiry).Round(time.Second))
	}
}
