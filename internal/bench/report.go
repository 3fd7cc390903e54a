package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Report is the outcome of a run.
type Report struct {
	Started      time.Time    `json:"started"`
	Machine      Machine      `json:"machine"`
	Config       ReportConfig `json:"config"`
	Issuer       string       `json:"issuer"`
	Floors       []Floor      `json:"floors"`
	Scenarios    []Scenario   `json:"scenarios"`
	Fanout       *Fanout      `json:"revoke_all,omitempty"`
	Soak         *Soak        `json:"soak,omitempty"`
	Memory       Memory       `json:"memory"`
	ServerErrors int64        `json:"server_errors_logged"`
	Targets      []Target     `json:"targets"`
	Pass         bool         `json:"pass"`
}

// ReportConfig is the run's shape.
type ReportConfig struct {
	Duration    time.Duration `json:"duration_ns"`
	Concurrency []int         `json:"concurrency"`
	// TargetConcurrency is the level the targets are judged at.
	TargetConcurrency int           `json:"target_concurrency"`
	Soak              time.Duration `json:"soak_ns,omitempty"`
	SoakWindow        time.Duration `json:"soak_window_ns,omitempty"`
	Sessions          int           `json:"sessions"`
	Apps              int           `json:"apps"`
	IDTokenAlg        string        `json:"id_token_alg"`
	RSASigner         string        `json:"rsa_signer"` // the library signing RS256: OpenSSL's libcrypto or Go's crypto/rsa
	Argon2            string        `json:"argon2id"`
	GC                string        `json:"gc"`
	PoolMaxConns      int32         `json:"provider_pool_max_conns"`
}

// Machine is where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	MemoryMB   int64  `json:"memory_mb"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Postgres   string `json:"postgres"`
	// PostgresSettings are those that decide the cost of a commit.
	PostgresSettings map[string]string `json:"postgres_settings"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the end:
	// the run itself keeps about two cores busy, so more than that at the
	// end means something else competed for the machine.
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// Floor is a floor's measurement at one concurrency (the argon2id floor
// always hashes in GOMAXPROCS goroutines; Concurrency is the level of the
// scenarios it was measured beside).
type Floor struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
	Description string `json:"description"`
	Stats
	MaxRSS uint64 `json:"max_rss_bytes"`
}

// Scenario is a throughput scenario's measurement at one concurrency.
type Scenario struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
	Description string `json:"description"`
	Stats
	Floor string `json:"floor"`
	// FloorPerSec is the floor's rate measured alongside the scenario.
	FloorPerSec float64 `json:"floor_ops_per_sec"`
	Ratio       float64 `json:"ratio_to_floor"`
	// SliceRatios are the ratios in each pair of alternating slices: their
	// spread is how much the machine drifted during the measurement.
	SliceRatios []float64    `json:"slice_ratios"`
	RoundTrips  []RoundTrips `json:"round_trips"`
	// RoundTripsPerOp is the database round trips of all of an op's
	// requests, per op.
	RoundTripsPerOp float64 `json:"round_trips_per_op"`
	// MaxRSS is the largest resident set sampled while it was measured.
	MaxRSS uint64 `json:"max_rss_bytes"`
	Note   string `json:"note,omitempty"`
}

// Target is one of the goals, met or not.
type Target struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Pass bool   `json:"pass"`
}

// Limits the targets set.
const (
	RSSLimit        = 150_000_000 // bytes (150 MB)
	RevokeCallMax   = time.Second
	RevokeFanOutMax = 10 * time.Second
)

var ratioTargets = []struct {
	scenario string
	min      float64
}{
	{ScenarioClientCredentials, 0.60},
	{ScenarioIntrospection, 0.60},
	{ScenarioSilentSSO, 0.15},
	{ScenarioFullSignIn, 0.70},
}

// scenario is the measurement of name at workers workers.
func (rep *Report) scenario(name string, workers int) (Scenario, bool) {
	for _, s := range rep.Scenarios {
		if s.Name == name && s.Concurrency == workers {
			return s, true
		}
	}
	return Scenario{}, false
}

// evaluate sets Targets and Pass.
func (rep *Report) evaluate() {
	rep.Targets = nil
	add := func(name string, pass bool, got string) {
		rep.Targets = append(rep.Targets, Target{Name: name, Got: got, Pass: pass})
	}
	at := rep.Config.TargetConcurrency
	for _, t := range ratioTargets {
		s, ok := rep.scenario(t.scenario, at)
		if !ok {
			continue
		}
		add(fmt.Sprintf("%s at %d workers ≥ %.0f%% of the %s floor", t.scenario, at, 100*t.min, s.Floor),
			s.Ratio >= t.min, fmt.Sprintf("%.1f%%", 100*s.Ratio)+sliceNote(s.SliceRatios))
	}
	if f := rep.Fanout; f != nil {
		add(fmt.Sprintf("revoke-all of %d sessions × %d apps: the admin call returns in < %s", f.Sessions, f.Apps, RevokeCallMax),
			f.Call < RevokeCallMax, seconds(f.Call))
		// The logout tokens and the stream's SETs, each by its last.
		pass := true
		var got []string
		for _, d := range []struct {
			what               string
			received, expected int
			last               time.Duration
		}{
			{"logout tokens", f.Received, f.Expected, f.Last},
			{"SETs", f.SETs.Received, f.SETs.Expected, f.SETs.Last},
		} {
			if d.received != d.expected {
				pass = false
				got = append(got, fmt.Sprintf("%s: %d of %d arrived", d.what, d.received, d.expected))
				continue
			}
			pass = pass && d.last < RevokeFanOutMax
			got = append(got, d.what+" "+seconds(d.last))
		}
		add(fmt.Sprintf("revoke-all: all %d notifications and %d session-revoked SETs arrive in < %s", f.Expected, f.SETs.Expected, RevokeFanOutMax),
			pass, strings.Join(got, ", "))
	}
	if sk := rep.Soak; sk != nil {
		for _, f := range sk.Flows {
			add(fmt.Sprintf("soak: %s's last window ≥ %.0f%% of its first", f.Name, 100*soakMinLastToFirst),
				f.LastToFirst >= soakMinLastToFirst, fmt.Sprintf("%.0f%%", 100*f.LastToFirst))
		}
	}
	if rep.Memory.Supported {
		peak := max(rep.Memory.MaxRSS, rep.Memory.HWM)
		add("resident memory < 150 MB throughout", peak < RSSLimit, megabytes(peak)+" peak (VmHWM)")
	}
	errs := rep.errorCount()
	add("zero errors", errs == 0, fmt.Sprint(errs))
	rep.Pass = true
	for _, t := range rep.Targets {
		rep.Pass = rep.Pass && t.Pass
	}
}

// errorCount sums the failed ops, the provider's error log records and the
// revoke-all's problems.
func (rep *Report) errorCount() uint64 {
	n := uint64(rep.ServerErrors)
	for _, f := range rep.Floors {
		n += f.Errors
	}
	for _, s := range rep.Scenarios {
		n += s.Errors
	}
	if f := rep.Fanout; f != nil {
		n += uint64(f.Invalid) + uint64(f.SETs.Invalid) + uint64(len(f.Errors))
	}
	if sk := rep.Soak; sk != nil {
		for _, f := range sk.Flows {
			n += f.Errors
		}
	}
	return n
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func megabytes(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as tables.
func (rep *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	m := rep.Machine
	fmt.Fprintf(&b, "idp-bench %s\n", rep.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "machine:  %s, %d cores (GOMAXPROCS %d), %d MB RAM, Linux %s, %s\n",
		m.CPU, m.Cores, m.GOMAXPROCS, m.MemoryMB, m.Kernel, m.Go)
	fmt.Fprintf(&b, "postgres: %s (%s)\n", m.Postgres, settings(m.PostgresSettings))
	fmt.Fprintf(&b, "load:     %s before, %s after (1, 5, 15 min)\n", m.LoadBefore, m.LoadAfter)
	c := rep.Config
	if c.Soak > 0 {
		fmt.Fprintf(&b, "run:      soak of %s, reported every %s, %d workers, provider pool of %d connections, apps sign with %s (RSA by %s),\n"+
			"          argon2id %s, %s, in-process provider at %s\n",
			c.Soak, c.SoakWindow, c.TargetConcurrency, c.PoolMaxConns, c.IDTokenAlg, c.RSASigner, c.Argon2, c.GC, rep.Issuer)
	} else {
		fmt.Fprintf(&b, "run:      %s per measurement (after a %s warm-up; each scenario in %d slices alternating with its floor's at the same concurrency),\n"+
			"          %s workers (targets at %d), provider pool of %d connections, apps sign with %s (RSA by %s), argon2id %s, %s,\n"+
			"          in-process provider at %s\n",
			c.Duration, warmup(c.Duration), rounds(c.Duration), joinInts(c.Concurrency, ", "), c.TargetConcurrency,
			c.PoolMaxConns, c.IDTokenAlg, c.RSASigner, c.Argon2, c.GC, rep.Issuer)
	}
	writeTable(&b, rep)
	writeSoak(&b, rep.Soak)
	writeCPU(&b, rep)
	for _, s := range rep.Scenarios {
		if s.Note != "" {
			fmt.Fprintf(&b, "note: %s at %d workers: %s\n", s.Name, s.Concurrency, s.Note)
		}
	}
	for _, s := range append(append([]Scenario{}, floorsAsScenarios(rep.Floors)...), rep.Scenarios...) {
		if s.Errors > 0 {
			fmt.Fprintf(&b, "errors: %s at %d workers: %d of %d ops failed\n", s.Name, s.Concurrency, s.Errors, s.Errors+s.Ops)
		}
		for _, e := range s.FirstErrors {
			fmt.Fprintf(&b, "error: %s at %d workers: %s\n", s.Name, s.Concurrency, e)
		}
	}

	if f := rep.Fanout; f != nil {
		fmt.Fprintf(&b, "\nrevoke_all: %d sessions × %d apps, via %s\n", f.Sessions, f.Apps, f.Method)
		fmt.Fprintf(&b, "  admin call returned   %s  (%d sessions, %d access tokens, %d refresh tokens ended; %d notifications queued)\n",
			seconds(f.Call), f.Revoked.Sessions, f.Revoked.AccessTokens, f.Revoked.RefreshTokens, f.Revoked.Notifications)
		last := seconds(f.Last)
		if f.Received != f.Expected {
			last = "never"
		}
		fmt.Fprintf(&b, "  last notification     %s  (%d of %d verified; %d duplicates, %d invalid; %d TCP connections to the receivers)\n",
			last, f.Received, f.Expected, f.Duplicates, f.Invalid, f.Connections)
		st := f.SETs
		lastSET := seconds(st.Last)
		if st.Received != st.Expected {
			lastSET = "never"
		}
		fmt.Fprintf(&b, "  last SET              %s  (stream %s: %d of %d session-revoked verified; %d duplicates, %d invalid; %d TCP connections)\n",
			lastSET, st.StreamID, st.Received, st.Expected, st.Duplicates, st.Invalid, st.Connections)
		if f.Last > 0 && f.Received == f.Expected && st.Last > 0 && st.Received == st.Expected {
			// One outbox delivers both, so the SETs' own rate would count
			// their wait behind the logout tokens.
			both := f.Expected + st.Expected
			fmt.Fprintf(&b, "  delivery              %.0f notifications/s after the call, %.0f counting the SETs; %.2f database round trips per notification or SET outside requests\n",
				float64(f.Expected)/(f.Last-f.Call).Seconds(), float64(both)/(max(f.Last, st.Last)-f.Call).Seconds(),
				float64(f.WorkerRoundTrips)/float64(both))
		}
		for _, e := range f.Errors {
			fmt.Fprintf(&b, "  error: %s\n", e)
		}
	}

	if len(rep.Scenarios) > 0 || rep.Fanout != nil {
		fmt.Fprintf(&b, "\ndatabase round trips per request (pgx tracer on the provider's pool; a batch is one trip)\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\tworkers\trequest\trequests\tavg\tmin\tmax\tstatements\tserver time\t")
		rows := func(name, workers string, list []RoundTrips) {
			for _, rt := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%d\t%d\t%.2f\t%s\t\n", name, workers, rt.Request, rt.Requests, rt.Avg, rt.Min, rt.Max, rt.Statements, ms(rt.ServerTime))
			}
		}
		for _, s := range rep.Scenarios {
			rows(s.Name, strconv.Itoa(s.Concurrency), s.RoundTrips)
		}
		if rep.Fanout != nil {
			rows(ScenarioRevokeAll, "1", rep.Fanout.RoundTrips)
		}

		tw.Flush()
	}

	mem := rep.Memory
	if mem.Supported {
		fmt.Fprintf(&b, "\nresident memory: max sampled %s, VmHWM %s (%d samples, every 100 ms); per phase:",
			megabytes(mem.MaxRSS), megabytes(mem.HWM), mem.Samples)
		for _, p := range phaseOrder(rep) {
			if v, ok := mem.PerPhase[p]; ok {
				fmt.Fprintf(&b, " %s %s;", p, megabytes(v))
			}
		}
		b.WriteString("\n")
	}
	if rep.ServerErrors > 0 {
		fmt.Fprintf(&b, "the provider logged %d errors (see stderr)\n", rep.ServerErrors)
	}

	b.WriteString("\ntargets\n")
	for _, t := range rep.Targets {
		verdict := "PASS"
		if !t.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %s: %s\n", verdict, t.Name, t.Got)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func floorsAsScenarios(fs []Floor) []Scenario {
	out := make([]Scenario, len(fs))
	for i, f := range fs {
		out[i] = Scenario{Name: "floor " + f.Name, Concurrency: f.Concurrency, Stats: f.Stats, MaxRSS: f.MaxRSS}
	}
	return out
}

func phaseOrder(rep *Report) []string {
	out := []string{"setup"}
	for _, f := range rep.Floors {
		out = append(out, phaseName("floor:"+f.Name, f.Concurrency))
	}
	for _, s := range rep.Scenarios {
		out = append(out, phaseName(s.Name, s.Concurrency))
	}
	if rep.Fanout != nil {
		out = append(out, ScenarioRevokeAll)
	}
	if rep.Soak != nil {
		out = append(out, phaseSoak)
	}
	return out
}

func joinInts(xs []int, sep string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, sep)
}

// levels are the worker counts measured, in the order given.
func (rep *Report) levels() []int { return rep.Config.Concurrency }

// writeTable prints the floors and the scenarios in one table, a group of
// columns per concurrency: ops/s, the ratio to the floor measured beside
// it, p50 and p99, database round trips per op, and the resident peak.
func writeTable(b *bytes.Buffer, rep *Report) {
	if len(rep.Floors) == 0 && len(rep.Scenarios) == 0 {
		return
	}
	levels := rep.levels()
	const perLevel = "ops/s\tof floor\tp50\tp99\ttrips/op\tRSS MB\t"
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head, sub := "\t\t", "\tfloor\t"
	for i, c := range levels {
		sep := ""
		if i > 0 {
			sep = "│\t"
			sub += "│\t"
		}
		head += sep + fmt.Sprintf("%d workers", c) + strings.Repeat("\t", strings.Count(perLevel, "\t"))
		sub += perLevel
	}
	fmt.Fprintln(tw, "\n"+head)
	fmt.Fprintln(tw, sub)
	type key struct {
		name    string
		workers int
	}
	cells := map[key]string{}
	var names []string
	floorRows := floorsAsScenarios(rep.Floors)
	for _, s := range append(floorRows, rep.Scenarios...) {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
		ratio, trips := "", ""
		if s.Floor != "" {
			ratio, trips = fmt.Sprintf("%.1f%%", 100*s.Ratio), fmt.Sprintf("%.2f", s.RoundTripsPerOp)
		}
		cells[key{s.Name, s.Concurrency}] = fmt.Sprintf("%.1f\t%s\t%s\t%s\t%s\t%s\t", s.PerSec, ratio, ms(s.P50), ms(s.P99), trips, rssMB(s.MaxRSS))
	}
	floorOfRow := map[string]string{}
	for _, s := range rep.Scenarios {
		floorOfRow[s.Name] = s.Floor
	}
	nFloors := 0
	for _, f := range rep.Floors {
		if !slices.Contains(names[:nFloors], "floor "+f.Name) {
			nFloors++
		}
	}
	for i, name := range names {
		if i == nFloors && i > 0 && len(rep.Scenarios) > 0 {
			// A rule between the floors and the scenarios.
			fmt.Fprintln(tw, strings.Repeat("\t", strings.Count(sub, "\t")))
		}
		line := name + "\t" + floorOfRow[name] + "\t"
		for j, c := range levels {
			if j > 0 {
				line += "│\t"
			}
			cell, ok := cells[key{name, c}]
			if !ok {
				cell = strings.Repeat("-\t", strings.Count(perLevel, "\t"))
			}
			line += cell
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func rssMB(b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(b)/1e6)
}

func settings(m map[string]string) string {
	var parts []string
	for _, k := range postgresSettings {
		if v, ok := m[k]; ok {
			parts = append(parts, k+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

var postgresSettings = []string{"fsync", "synchronous_commit", "shared_buffers", "max_connections", "autovacuum"}

// describeMachine reads the hardware from /proc and PostgreSQL's version and
// commit settings from the server.
func describeMachine(ctx context.Context, pool *pgxpool.Pool) Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, PostgresSettings: map[string]string{}}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		fmt.Sscan(v, &kb) //nolint:errcheck // zero if unreadable
		m.MemoryMB = kb * 1024 / 1e6
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadBefore = loadAvg()
	pool.QueryRow(ctx, `SELECT version()`).Scan(&m.Postgres) //nolint:errcheck // left empty
	if i := strings.Index(m.Postgres, " on "); i > 0 {
		m.Postgres = m.Postgres[:i]
	}
	for _, k := range postgresSettings {
		var v string
		if err := pool.QueryRow(ctx, `SELECT current_setting($1)`, k).Scan(&v); err == nil {
			m.PostgresSettings[k] = v
		}
	}
	return m
}

// procField returns the value of the first "name: value" line of file.
func procField(file, name string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the 1, 5 and 15 minute load average.
// writeCPU prints what one operation of each floor and scenario cost in CPU.
func writeCPU(b *bytes.Buffer, rep *Report) {
	all := append(floorsAsScenarios(rep.Floors), rep.Scenarios...)
	if !slices.ContainsFunc(all, func(s Scenario) bool { return s.ProcessCPUPerOp > 0 }) {
		return
	}
	fmt.Fprintf(b, "\nCPU per operation (process: provider and load generator; postgres: the database server's processes, when on this machine; machine: all %d CPUs, PostgreSQL and anything else running included)\n", rep.Machine.Cores)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tworkers\tprocess\tpostgres\tmachine\tmachine busy\t")
	for _, s := range all {
		if s.ProcessCPUPerOp == 0 {
			continue
		}
		machine, busy, pg := "?", "?", "?"
		if s.MachineCPUPerOp > 0 {
			machine, busy = ms(s.MachineCPUPerOp), fmt.Sprintf("%.0f%%", 100*s.Busy)
		}
		if s.PostgresCPUPerOp > 0 {
			pg = ms(s.PostgresCPUPerOp)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", s.Name, s.Concurrency, ms(s.ProcessCPUPerOp), pg, machine, busy)
	}
	tw.Flush()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sliceNote is percentRange for a target's verdict: "(slices 57.1–64.0%)".
func sliceNote(ratios []float64) string {
	if r := percentRange(ratios); r != "" {
		return " (slices " + r + ")"
	}
	return ""
}

// percentRange writes the lowest and highest of ratios as percentages,
// "57.1–64.0%"; one ratio alone, or none, says nothing more than the total.
func percentRange(ratios []float64) string {
	if len(ratios) < 2 {
		return ""
	}
	return fmt.Sprintf("%.1f–%.1f%%", 100*slices.Min(ratios), 100*slices.Max(ratios))
}
