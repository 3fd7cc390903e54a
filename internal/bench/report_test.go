package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// levelsReport is a run at 4 and 16 workers where client_credentials meets its
// target at 4 and misses it at 16, and silent SSO the other way round.
func levelsReport() *Report {
	st := func(perSec float64) Stats {
		return Stats{Ops: uint64(perSec), PerSec: perSec, P50: time.Millisecond, P99: 2 * time.Millisecond}
	}
	rep := &Report{Config: ReportConfig{Concurrency: []int{4, 16}, TargetConcurrency: 16}}
	for _, c := range []int{4, 16} {
		rep.Floors = append(rep.Floors, Floor{Name: FloorInsert, Concurrency: c, Stats: st(1000), MaxRSS: 100e6})
	}
	rep.Scenarios = []Scenario{
		{Name: ScenarioClientCredentials, Concurrency: 4, Floor: FloorInsert, Stats: st(800), Ratio: 0.80, RoundTripsPerOp: 1, MaxRSS: 110e6},
		{Name: ScenarioClientCredentials, Concurrency: 16, Floor: FloorInsert, Stats: st(400), Ratio: 0.40, RoundTripsPerOp: 1, MaxRSS: 120e6},
		{Name: ScenarioSilentSSO, Concurrency: 4, Floor: FloorInsert, Stats: st(100), Ratio: 0.10, RoundTripsPerOp: 4},
		{Name: ScenarioSilentSSO, Concurrency: 16, Floor: FloorInsert, Stats: st(200), Ratio: 0.20, RoundTripsPerOp: 4},
	}
	return rep
}

// TestReport_TargetsAtTargetConcurrency: the ratio targets are judged on
// the measurement at the target concurrency only.
func TestReport_TargetsAtTargetConcurrency(t *testing.T) {
	rep := levelsReport()
	rep.evaluate()
	got := map[string]bool{}
	for _, tg := range rep.Targets {
		got[tg.Name] = tg.Pass
	}
	for name, want := range map[string]bool{
		"client_credentials at 16 workers ≥ 60% of the insert floor": false,
		"silent_sso at 16 workers ≥ 15% of the insert floor":         true,
		"zero errors": true,
	} {
		pass, ok := got[name]
		if !ok {
			t.Errorf("no target %q in %v", name, got)
			continue
		}
		if pass != want {
			t.Errorf("target %q passed = %v, want %v", name, pass, want)
		}
	}
	if rep.Pass {
		t.Error("the run passed with client_credentials at 40% at 16 workers")
	}
}

// TestReport_OneTable: one table, a group of columns per level, a row per
// floor and scenario, each level's numbers in its own group.
func TestReport_OneTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, levelsReport())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.Contains(lines[0], "4 workers") || !strings.Contains(lines[0], "16 workers") {
		t.Fatalf("header %q does not name both levels:\n%s", lines[0], b.String())
	}
	if n := strings.Count(lines[1], "ops/s"); n != 2 {
		t.Errorf("%d ops/s columns, want 2:\n%s", n, b.String())
	}
	row := func(name string) string {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), name+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s:\n%s", name, b.String())
		return ""
	}
	cc := row(ScenarioClientCredentials)
	left, right, ok := strings.Cut(cc, "│")
	if !ok || !strings.Contains(left, "80.0%") || !strings.Contains(right, "40.0%") || !strings.Contains(right, "120") {
		t.Errorf("client_credentials row %q: want 80.0%% in the 4-worker group, 40.0%% and 120 MB in the 16-worker group", cc)
	}
	if f := row("floor " + FloorInsert); strings.Count(f, "1000.0") != 2 {
		t.Errorf("floor row %q: want its rate at both levels", f)
	}
}

// TestReport_RevokeAllTarget: the revoke-all's delivery target needs every
// logout token and every session-revoked SET, each by its last within the
// bound, and an invalid SET is an error of the run.
func TestReport_RevokeAllTarget(t *testing.T) {
	const name = "revoke-all: all 3000 notifications and 1000 session-revoked SETs arrive in < 10s"
	whole := func() *Fanout {
		return &Fanout{Sessions: 1000, Apps: 3, Call: 200 * time.Millisecond, Expected: 3000, Received: 3000, Last: 3 * time.Second,
			SETs: SETs{StreamID: "st", Expected: 1000, Received: 1000, Last: 2 * time.Second}}
	}
	for _, tc := range []struct {
		name     string
		change   func(*Fanout)
		pass     bool
		got      string
		zeroErrs bool
	}{
		{"all in time", func(*Fanout) {}, true, "logout tokens 3.000 s, SETs 2.000 s", true},
		{"a SET missing", func(f *Fanout) { f.SETs.Received = 999 }, false, "logout tokens 3.000 s, SETs: 999 of 1000 arrived", true},
		{"no SET", func(f *Fanout) { f.SETs.Received, f.SETs.Last = 0, 0 }, false, "logout tokens 3.000 s, SETs: 0 of 1000 arrived", true},
		{"the last SET late", func(f *Fanout) { f.SETs.Last = 11 * time.Second }, false, "logout tokens 3.000 s, SETs 11.000 s", true},
		{"a logout token missing", func(f *Fanout) { f.Received = 2999 }, false, "logout tokens: 2999 of 3000 arrived, SETs 2.000 s", true},
		{"an invalid SET", func(f *Fanout) { f.SETs.Invalid = 1 }, true, "logout tokens 3.000 s, SETs 2.000 s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := whole()
			tc.change(f)
			rep := &Report{Fanout: f}
			rep.evaluate()
			got := map[string]Target{}
			for _, tg := range rep.Targets {
				got[tg.Name] = tg
			}
			tg, ok := got[name]
			if !ok {
				t.Fatalf("no target %q in %+v", name, rep.Targets)
			}
			if tg.Pass != tc.pass || tg.Got != tc.got {
				t.Errorf("target = %v %q, want %v %q", tg.Pass, tg.Got, tc.pass, tc.got)
			}
			if z := got["zero errors"]; z.Pass != tc.zeroErrs {
				t.Errorf("zero errors passed = %v (%s), want %v", z.Pass, z.Got, tc.zeroErrs)
			}
			var b bytes.Buffer
			if err := rep.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "last SET") {
				t.Errorf("the text has no line for the last SET:\n%s", b.String())
			}
		})
	}
}
