package main

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/idp/idp/internal/server"
)

// compose is the part of docker-compose.yml these checks read.
type compose struct {
	Services map[string]struct {
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		NetworkMode string            `yaml:"network_mode"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// TestDockerCompose checks docker-compose.yml and the Dockerfile against
// the binaries' real configuration names and ports, since no Docker engine
// runs in CI.
func TestDockerCompose(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	idp, ok := c.Services["idp"]
	if !ok {
		t.Fatal("no idp service")
	}

	// The provider's variables are the ones `idp serve` reads.
	var help bytes.Buffer
	run(context.Background(), []string{"serve", "-h"}, func(string) string { return "" }, nil, &help, &help)
	known := map[string]bool{"IDP_DATABASE_URL": true, "IDP_SECRET": true}
	for _, m := range regexp.MustCompile(`\$(IDP_[A-Z_]+)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	for name := range idp.Environment {
		if !known[name] {
			t.Errorf("idp service sets %s, which idp serve does not read", name)
		}
	}
	env := idp.Environment
	cfg := server.Config{Issuer: env["IDP_ISSUER"], Secret: env["IDP_SECRET"]}
	if err := cfg.Validate(); err != nil {
		t.Errorf("compose configuration is invalid: %v", err)
	}

	_, addrPort, _ := net.SplitHostPort(env["IDP_ADDR"])
	issuer, _ := url.Parse(env["IDP_ISSUER"])
	if !slices.Contains(idp.Ports, issuer.Port()+":"+addrPort) {
		t.Errorf("idp ports %v do not publish the issuer's port %s to IDP_ADDR's %s", idp.Ports, issuer.Port(), addrPort)
	}
	if hc := strings.Join(idp.Healthcheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+addrPort+"/readyz") {
		t.Errorf("idp healthcheck %q does not probe /readyz on port %s", hc, addrPort)
	}

	// The demo apps read DEMO_* variables named in examples/demo-app.
	src, err := os.ReadFile("../../examples/demo-app/main.go")
	if err != nil {
		t.Fatal(err)
	}
	demoKnown := map[string]bool{}
	for _, m := range regexp.MustCompile(`env\("(DEMO_[A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		demoKnown[m[1]] = true
	}
	setup, err := os.ReadFile("../../scripts/docker-demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app-a", "app-b"} {
		app, ok := c.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		for k := range app.Environment {
			if !demoKnown[k] {
				t.Errorf("%s sets %s, which demo-app does not read", name, k)
			}
		}
		if app.NetworkMode != "service:idp" {
			t.Errorf("%s must share the provider's network namespace (localhost means the same in browser and app)", name)
		}
		_, port, _ := net.SplitHostPort(app.Environment["DEMO_ADDR"])
		public, _ := url.Parse(app.Environment["DEMO_PUBLIC_URL"])
		if public.Port() != port || !slices.Contains(idp.Ports, port+":"+port) {
			t.Errorf("%s listens on %s, public URL %s, but idp publishes %v", name, port, public, idp.Ports)
		}
		if app.Environment["DEMO_ISSUER"] != env["IDP_ISSUER"] {
			t.Errorf("%s DEMO_ISSUER %q differs from IDP_ISSUER %q", name, app.Environment["DEMO_ISSUER"], env["IDP_ISSUER"])
		}
		if !regexp.MustCompile(`create_app ` + name + ` "[^"]+" ` + port).Match(setup) {
			t.Errorf("scripts/docker-demo.sh does not register %s at port %s", name, port)
		}
		if want := "/run/idp-demo/" + name + ".secret"; app.Environment["DEMO_CLIENT_SECRET_FILE"] != want {
			t.Errorf("%s reads its secret from %q, the setup writes %q", name, app.Environment["DEMO_CLIENT_SECRET_FILE"], want)
		}
	}

	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(dockerfile)
	if strings.Count(df, "\nFROM ") < 2 {
		t.Error("Dockerfile is not multi-stage")
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df); m == nil || strings.HasPrefix(m[1], "0") || m[1] == "root" {
		t.Error("Dockerfile does not switch to a non-root user")
	}
	// The provider is built with libcrypto signing RS256 (scripts/gotags.sh),
	// and the image it runs on has the library.
	if !regexp.MustCompile(`CGO_ENABLED=1 go build -tags openssl [^\n]*\./cmd/idp`).MatchString(df) {
		t.Error("Dockerfile does not build ./cmd/idp with cgo and -tags openssl")
	}
	if final := df[strings.LastIndex(df, "\nFROM "):]; !strings.Contains(final, "libssl3") {
		t.Error("the Dockerfile's final stage does not install libssl3, which the openssl build loads")
	}
	for _, want := range []string{"./cmd/idp", "./examples/demo-app", "scripts/docker-demo.sh"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not build or copy %s", want)
		}
	}
}
