// Command demo-app runs the demo relying party (package demoapp): a web app
// that signs people in through the provider and shows their SSO session.
// Each setting is a flag and an environment variable; the client secret is
// better given in the environment, where other users cannot read it from
// the process list.
//
//	DEMO_CLIENT_SECRET=… demo-app -issuer http://localhost:8080 \
//	    -client-id app-a -addr 127.0.0.1:9001 -public-url http://localhost:9001 -name "App A"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/idp/idp/internal/demoapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "demo-app: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg demoapp.Config
	addr := fs.String("addr", env("DEMO_ADDR", ":9000"), "listen `address` (DEMO_ADDR)")
	fs.StringVar(&cfg.Issuer, "issuer", env("DEMO_ISSUER", env("IDP_ISSUER", "http://localhost:8080")), "the provider's issuer `URL` (DEMO_ISSUER, else IDP_ISSUER)")
	fs.StringVar(&cfg.ClientID, "client-id", env("DEMO_CLIENT_ID", ""), "OAuth client `id` (DEMO_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", env("DEMO_CLIENT_SECRET", ""), "OAuth client `secret` (DEMO_CLIENT_SECRET; prefer the variable)")
	fs.StringVar(&cfg.PublicURL, "public-url", env("DEMO_PUBLIC_URL", ""), "`URL` browsers reach this app at (DEMO_PUBLIC_URL; default http://localhost:PORT)")
	fs.StringVar(&cfg.Name, "name", env("DEMO_APP_NAME", ""), "app `name` shown on its pages (DEMO_APP_NAME; default the client id)")
	secretFile := fs.String("client-secret-file", env("DEMO_CLIENT_SECRET_FILE", ""), "read the client secret from this `file` (DEMO_CLIENT_SECRET_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.ClientSecret == "" && *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("client secret file: %w", err)
		}
		cfg.ClientSecret = strings.TrimSpace(string(b))
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return errors.New("a client id and secret are required (-client-id, DEMO_CLIENT_SECRET)")
	}
	if cfg.PublicURL == "" {
		_, port, err := net.SplitHostPort(*addr)
		if err != nil {
			return fmt.Errorf("-addr %q: %w", *addr, err)
		}
		cfg.PublicURL = "http://localhost:" + port
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	app, err := demoapp.New(cfg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	cfg.Logger.Info("demo app listening", "app", cfg.Name, "url", cfg.PublicURL, "issuer", cfg.Issuer,
		"backchannel_logout_uri", cfg.BackchannelLogoutURL())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}
