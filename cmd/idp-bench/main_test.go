package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/bench"
	"github.com/idp/idp/internal/dbtest"
)

// TestRun_Smoke runs every floor and scenario for a moment against a real
// PostgreSQL and checks the report is whole and the provider made no
// error. Throughput targets are not judged on runs this short.
func TestRun_Smoke(t *testing.T) {
	url := dbtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"--database-url", url, "--duration", "300ms", "--concurrency", "2",
		"--sessions", "20", "--apps", "2", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the --json output does not decode: %v\n%s", err, stdout.String())
	}

	floors := map[string]bench.Floor{}
	for _, f := range rep.Floors {
		floors[f.Name] = f
	}
	for _, name := range []string{bench.FloorArgon2, bench.FloorInsert, bench.FloorSelect} {
		f, ok := floors[name]
		if !ok {
			t.Errorf("floor %s is missing", name)
			continue
		}
		if f.Ops == 0 || f.Errors != 0 {
			t.Errorf("floor %s: %d ops, %d errors (%v), want some ops and no errors", name, f.Ops, f.Errors, f.FirstErrors)
		}
	}
	scenarios := map[string]bench.Scenario{}
	for _, s := range rep.Scenarios {
		scenarios[s.Name] = s
	}
	for _, name := range bench.Scenarios {
		if name == bench.ScenarioRevokeAll {
			continue
		}
		s, ok := scenarios[name]
		if !ok {
			t.Errorf("scenario %s is missing", name)
			continue
		}
		if s.Ops == 0 || s.Errors != 0 {
			t.Errorf("scenario %s: %d ops, %d errors (%v), want some ops and no errors", name, s.Ops, s.Errors, s.FirstErrors)
		}
		if s.Ratio <= 0 {
			t.Errorf("scenario %s: ratio to its floor %v, want > 0", name, s.Ratio)
		}
		// Each slice pair's ratio: one pair in so short a run.
		if len(s.SliceRatios) != 1 || s.SliceRatios[0] <= 0 {
			t.Errorf("scenario %s: slice ratios %v, want one, > 0", name, s.SliceRatios)
		}
		if len(s.RoundTrips) == 0 {
			t.Errorf("scenario %s: no database round trips counted", name)
		}
	}
	// client_credentials is one INSERT: the tracer must see exactly that
	// on every request but the rare client cache refill.
	if rt := scenarios[bench.ScenarioClientCredentials].RoundTrips; len(rt) != 1 || rt[0].Min != 1 {
		t.Errorf("client_credentials round trips = %+v, want POST /oauth2/token with a minimum of 1", rt)
	}

	f := rep.Fanout
	switch {
	case f == nil:
		t.Error("revoke_all is missing")
	case f.Revoked.Sessions != 20 || f.Expected != 40 || f.Received != 40:
		t.Errorf("revoke_all: %d sessions revoked, %d of %d notifications received; want 20 and 40 of 40",
			f.Revoked.Sessions, f.Received, f.Expected)
	case f.Invalid != 0 || len(f.Errors) != 0:
		t.Errorf("revoke_all: %d invalid logout tokens, errors %v", f.Invalid, f.Errors)
	case f.Call <= 0 || f.Last < f.Call:
		t.Errorf("revoke_all: call %s, last notification %s", f.Call, f.Last)
	case f.Method != "DELETE /admin/api/users/{id}/sessions":
		t.Errorf("revoke_all went through %q, want the admin API", f.Method)
	}
	if rep.ServerErrors != 0 {
		t.Errorf("the provider logged %d errors:\n%s", rep.ServerErrors, stderr.String())
	}
	var zero *bench.Target
	for i, tg := range rep.Targets {
		if tg.Name == "zero errors" {
			zero = &rep.Targets[i]
		}
	}
	if zero == nil || !zero.Pass {
		t.Errorf("target zero errors = %+v, want present and passed", zero)
	}

	// The table shows a row for every floor and scenario, and a verdict per
	// target.
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	table := text.String()
	for _, want := range append(append([]string{}, bench.Scenarios...), bench.FloorArgon2, bench.FloorInsert, bench.FloorSelect) {
		if !strings.Contains(table, want) {
			t.Errorf("table has no row for %s:\n%s", want, table)
		}
	}
	if n := strings.Count(table, "PASS ") + strings.Count(table, "FAIL "); n != len(rep.Targets) {
		t.Errorf("table has %d verdicts, want %d:\n%s", n, len(rep.Targets), table)
	}
}

// TestRun_Usage: mistakes in the command line are usage errors (exit 2),
// found before any database is touched.
func TestRun_Usage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown scenario", []string{"--only", "client_credentials,nope"}, `unknown scenario "nope"`},
		{"zero duration", []string{"--duration", "0s"}, "--duration"},
		{"zero concurrency", []string{"--concurrency", "0"}, "--concurrency"},
		{"bad algorithm", []string{"--id-token-alg", "HS256"}, "--id-token-alg"},
		{"stray argument", []string{"now"}, "unexpected argument"},
		{"unknown flag", []string{"--fast"}, "fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tc.want)
			}
			if code := exitCode(err, &stderr); code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}
