package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idp/idp/internal/bench"
	"github.com/idp/idp/internal/dbtest"
)

// TestRun_Smoke runs every floor and scenario for a moment at two
// concurrencies against a real PostgreSQL and checks the report is whole
// and the provider made no error. Throughput targets are not judged on runs
// this short.
func TestRun_Smoke(t *testing.T) {
	url := dbtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	levels := []int{1, 3}
	err := run(ctx, []string{"--database-url", url, "--duration", "300ms", "--concurrency", "1,3",
		"--sessions", "20", "--apps", "2", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the --json output does not decode: %v\n%s", err, stdout.String())
	}

	if got := rep.Config.Concurrency; !slices.Equal(got, levels) || rep.Config.TargetConcurrency != 3 {
		t.Errorf("config concurrency %v, targets at %d; want %v, at 3", got, rep.Config.TargetConcurrency, levels)
	}
	type key struct {
		name    string
		workers int
	}
	floors := map[key]bench.Floor{}
	for _, f := range rep.Floors {
		floors[key{f.Name, f.Concurrency}] = f
	}
	scenarios := map[key]bench.Scenario{}
	for _, s := range rep.Scenarios {
		scenarios[key{s.Name, s.Concurrency}] = s
	}
	for _, c := range levels {
		for _, name := range []string{bench.FloorArgon2, bench.FloorInsert, bench.FloorSelect} {
			f, ok := floors[key{name, c}]
			if !ok {
				t.Errorf("floor %s at %d workers is missing", name, c)
				continue
			}
			if f.Ops == 0 || f.Errors != 0 {
				t.Errorf("floor %s at %d: %d ops, %d errors (%v), want some ops and no errors", name, c, f.Ops, f.Errors, f.FirstErrors)
			}
		}
		for _, name := range bench.Scenarios {
			if name == bench.ScenarioRevokeAll {
				continue
			}
			s, ok := scenarios[key{name, c}]
			if !ok {
				t.Errorf("scenario %s at %d workers is missing", name, c)
				continue
			}
			if s.Ops == 0 || s.Errors != 0 {
				t.Errorf("scenario %s at %d: %d ops, %d errors (%v), want some ops and no errors", name, c, s.Ops, s.Errors, s.FirstErrors)
			}
			if s.Ratio <= 0 {
				t.Errorf("scenario %s at %d: ratio to its floor %v, want > 0", name, c, s.Ratio)
			}
			// Each slice pair's ratio: one pair in so short a run.
			if len(s.SliceRatios) != 1 || s.SliceRatios[0] <= 0 {
				t.Errorf("scenario %s at %d: slice ratios %v, want one, > 0", name, c, s.SliceRatios)
			}
			if len(s.RoundTrips) == 0 || s.RoundTripsPerOp < 1 {
				t.Errorf("scenario %s at %d: round trips %+v, %.2f per op; want counted, at least 1 per op", name, c, s.RoundTrips, s.RoundTripsPerOp)
			}
			if s.MaxRSS == 0 {
				t.Errorf("scenario %s at %d: no resident memory sampled", name, c)
			}
		}
		// client_credentials is one INSERT: the tracer must see exactly
		// that on every request but the rare client cache refill.
		if rt := scenarios[key{bench.ScenarioClientCredentials, c}].RoundTrips; len(rt) != 1 || rt[0].Min != 1 {
			t.Errorf("client_credentials at %d: round trips = %+v, want POST /oauth2/token with a minimum of 1", c, rt)
		}
	}
	// The ratio targets are judged at the largest concurrency.
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Name, "floor") && !strings.Contains(tg.Name, "at 3 workers") {
			t.Errorf("target %q is not judged at 3 workers", tg.Name)
		}
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
	// The stream's receiver verified one session-revoked SET per session.
	if f != nil {
		switch s := f.SETs; {
		case s.StreamID == "" || s.Expected != 20 || s.Received != 20:
			t.Errorf("revoke_all: stream %q, %d of %d session-revoked SETs received; want a stream and 20 of 20",
				s.StreamID, s.Received, s.Expected)
		case s.Invalid != 0:
			t.Errorf("revoke_all: %d invalid SETs, errors %v", s.Invalid, f.Errors)
		case s.Last <= 0 || s.Connections == 0:
			t.Errorf("revoke_all: last SET at %s over %d connections", s.Last, s.Connections)
		}
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

	// The table shows a row for every floor and scenario, a group of
	// columns per concurrency, and a verdict per target.
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	table := text.String()
	for _, want := range []string{"1 workers", "3 workers"} {
		if !strings.Contains(table, want) {
			t.Errorf("table has no columns for %s:\n%s", want, table)
		}
	}
	for _, want := range append(append([]string{}, bench.Scenarios...), bench.FloorArgon2, bench.FloorInsert, bench.FloorSelect) {
		if !strings.Contains(table, want) {
			t.Errorf("table has no row for %s:\n%s", want, table)
		}
	}
	if n := strings.Count(table, "PASS ") + strings.Count(table, "FAIL "); n != len(rep.Targets) {
		t.Errorf("table has %d verdicts, want %d:\n%s", n, len(rep.Targets), table)
	}
}

// TestRun_Soak runs the browser flows together for a few short windows,
// the janitor sweeping every second, and checks each window has its
// throughput and the tables' sizes, and the tables grow.
func TestRun_Soak(t *testing.T) {
	url := dbtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"--database-url", url, "--soak", "3s", "--soak-window", "1s", "--janitor-interval", "1s",
		"--prefill", "500", "--concurrency", "2", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the --json output does not decode: %v\n%s", err, stdout.String())
	}
	s := rep.Soak
	if s == nil {
		t.Fatalf("no soak in the report:\n%s", stdout.String())
	}
	if len(rep.Scenarios) != 0 || rep.Fanout != nil {
		t.Errorf("a soak ran %d scenarios and revoke_all %v; want the soak alone", len(rep.Scenarios), rep.Fanout != nil)
	}
	if s.JanitorInterval != time.Second {
		t.Errorf("janitor interval %s, want 1s", s.JanitorInterval)
	}
	var names []string
	for _, f := range s.Flows {
		names = append(names, f.Name)
		if f.Workers != 1 || f.Ops == 0 || f.Errors != 0 || f.LastToFirst <= 0 {
			t.Errorf("flow %s: %d workers, %d ops, %d errors (%v), last/first %.2f; want 1 worker, some ops, no errors, a ratio",
				f.Name, f.Workers, f.Ops, f.Errors, f.FirstErrors, f.LastToFirst)
		}
	}
	if want := []string{bench.ScenarioFullSignIn, bench.ScenarioSilentSSO}; !slices.Equal(names, want) {
		t.Errorf("soak flows %v, want %v", names, want)
	}
	if len(s.Windows) != 3 {
		t.Fatalf("%d windows, want 3", len(s.Windows))
	}
	for i, w := range s.Windows {
		if len(w.Flows) != 2 || len(w.Rows) != 8 || len(w.RoundTrips) == 0 {
			t.Errorf("window %d: %d flows, %d table counts, %d requests counted; want 2, 8, some", i, len(w.Flows), len(w.Rows), len(w.RoundTrips))
		}
	}
	first, last := s.Windows[0].Rows, s.Windows[2].Rows
	for _, table := range []string{"sso_sessions", "client_sessions", "oauth_authorize_codes", "oauth_access_tokens", "oauth_refresh_tokens", "audit_log"} {
		if first[table] < 500 {
			t.Errorf("%s: %d rows after the first window, want the 500 prefilled and more", table, first[table])
		}
	}
	for _, table := range []string{"sso_sessions", "oauth_access_tokens"} {
		if last[table] <= first[table] {
			t.Errorf("%s: %d rows after the first window, %d after the last; want growth", table, first[table], last[table])
		}
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"soak: 3s", "last window / first: full_signin", "sso_sessions", "time in the handler"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the soak's text has no %q:\n%s", want, text.String())
		}
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
		{"zero concurrency", []string{"--concurrency", "0"}, "concurrency"},
		{"concurrency not a list of numbers", []string{"--concurrency", "4,many"}, `"many" is not a positive number`},
		{"negative soak", []string{"--soak", "-1s"}, "--soak"},
		{"soak window without soak", []string{"--soak-window", "10s"}, "--soak-window needs --soak"},
		{"prefill without soak", []string{"--prefill", "1000"}, "--prefill needs --soak"},
		{"soak window longer than the soak", []string{"--soak", "10s", "--soak-window", "1m"}, "--soak-window must not be longer"},
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
