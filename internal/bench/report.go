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
	Memory       Memory       `json:"memory"`
	ServerErrors int64        `json:"server_errors_logged"`
	Targets      []Target     `json:"targets"`
	Pass         bool         `json:"pass"`
}

// ReportConfig is the run's shape.
type ReportConfig struct {
	Duration     time.Duration `json:"duration_ns"`
	Concurrency  int           `json:"concurrency"`
	Sessions     int           `json:"sessions"`
	Apps         int           `json:"apps"`
	IDTokenAlg   string        `json:"id_token_alg"`
	RSASigner    string        `json:"rsa_signer"` // the library signing RS256: OpenSSL's libcrypto or Go's crypto/rsa
	Argon2       string        `json:"argon2id"`
	GC           string        `json:"gc"`
	PoolMaxConns int32         `json:"provider_pool_max_conns"`
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

// Floor is a floor's measurement.
type Floor struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Stats
}

// Scenario is a throughput scenario's measurement.
type Scenario struct {
	Name        string `json:"name"`
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
	Note        string       `json:"note,omitempty"`
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
	{ScenarioClientCredentials, 0.40},
	{ScenarioIntrospection, 0.40},
	{ScenarioSilentSSO, 0.15},
	{ScenarioFullSignIn, 0.70},
}

func (rep *Report) scenario(name string) (Scenario, bool) {
	for _, s := range rep.Scenarios {
		if s.Name == name {
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
	for _, t := range ratioTargets {
		s, ok := rep.scenario(t.scenario)
		if !ok {
			continue
		}
		add(fmt.Sprintf("%s ≥ %.0f%% of the %s floor", t.scenario, 100*t.min, s.Floor),
			s.Ratio >= t.min, fmt.Sprintf("%.1f%%", 100*s.Ratio)+sliceNote(s.SliceRatios))
	}
	if f := rep.Fanout; f != nil {
		add(fmt.Sprintf("revoke-all of %d sessions × %d apps: the admin call returns in < %s", f.Sessions, f.Apps, RevokeCallMax),
			f.Call < RevokeCallMax, seconds(f.Call))
		all := f.Received == f.Expected
		got := seconds(f.Last)
		if !all {
			got = fmt.Sprintf("%d of %d arrived", f.Received, f.Expected)
		}
		add(fmt.Sprintf("revoke-all: all %d notifications arrive in < %s", f.Expected, RevokeFanOutMax),
			all && f.Last < RevokeFanOutMax, got)
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
		n += uint64(f.Invalid) + uint64(len(f.Errors))
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
	fmt.Fprintf(&b, "run:      %s per measurement (after a %s warm-up; each scenario in %d slices alternating with its floor's), %d workers,\n"+
		"          provider pool of %d connections, apps sign with %s (RSA by %s), argon2id %s, %s,\n"+
		"          in-process provider at %s\n\n",
		c.Duration, warmup(c.Duration), rounds(c.Duration), c.Concurrency, c.PoolMaxConns, c.IDTokenAlg, c.RSASigner, c.Argon2, c.GC, rep.Issuer)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Floors) > 0 {
		fmt.Fprintln(tw, "floor\tops/s\tp50\tp99\tops\terrors\t")
		for _, f := range rep.Floors {
			fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%d\t%d\t\n", f.Name, f.PerSec, ms(f.P50), ms(f.P99), f.Ops, f.Errors)
		}
		fmt.Fprintln(tw, "\t\t\t\t\t\t")
	}
	if len(rep.Scenarios) > 0 {
		fmt.Fprintln(tw, "scenario\tops/s\tp50\tp99\tops\terrors\tfloor\tfloor ops/s\tof floor\tper slice\t")
		for _, s := range rep.Scenarios {
			fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%d\t%d\t%s\t%.1f\t%.1f%%\t%s\t\n", s.Name, s.PerSec, ms(s.P50), ms(s.P99), s.Ops, s.Errors,
				s.Floor, s.FloorPerSec, 100*s.Ratio, percentRange(s.SliceRatios))
		}
	}
	tw.Flush()
	writeCPU(&b, rep)
	for _, s := range rep.Scenarios {
		if s.Note != "" {
			fmt.Fprintf(&b, "note: %s: %s\n", s.Name, s.Note)
		}
	}
	for _, s := range append(append([]Scenario{}, floorsAsScenarios(rep.Floors)...), rep.Scenarios...) {
		for _, e := range s.FirstErrors {
			fmt.Fprintf(&b, "error: %s: %s\n", s.Name, e)
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
		if f.Last > 0 && f.Received == f.Expected {
			fmt.Fprintf(&b, "  delivery              %.0f notifications/s after the call; %.2f database round trips per notification outside requests\n",
				float64(f.Expected)/(f.Last-f.Call).Seconds(), float64(f.WorkerRoundTrips)/float64(f.Expected))
		}
		for _, e := range f.Errors {
			fmt.Fprintf(&b, "  error: %s\n", e)
		}
	}

	fmt.Fprintf(&b, "\ndatabase round trips per request (pgx tracer on the provider's pool; a batch is one trip)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequest\trequests\tavg\tmin\tmax\tstatements\tserver time\t")
	rows := func(name string, list []RoundTrips) {
		for _, rt := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%d\t%d\t%.2f\t%s\t\n", name, rt.Request, rt.Requests, rt.Avg, rt.Min, rt.Max, rt.Statements, ms(rt.ServerTime))
		}
	}
	for _, s := range rep.Scenarios {
		rows(s.Name, s.RoundTrips)
	}
	if rep.Fanout != nil {
		rows(ScenarioRevokeAll, rep.Fanout.RoundTrips)
	}
	tw.Flush()

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
		out[i] = Scenario{Name: "floor " + f.Name, Stats: f.Stats}
	}
	return out
}

func phaseOrder(rep *Report) []string {
	out := []string{"setup"}
	for _, f := range rep.Floors {
		out = append(out, "floor:"+f.Name)
	}
	for _, s := range rep.Scenarios {
		out = append(out, s.Name)
	}
	if rep.Fanout != nil {
		out = append(out, ScenarioRevokeAll)
	}
	return out
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

var postgresSettings = []string{"fsync", "synchronous_commit", "shared_buffers", "max_connections"}

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
	fmt.Fprintf(b, "\nCPU per operation (process: provider and load generator; machine: all %d CPUs, PostgreSQL and anything else running included)\n", rep.Machine.Cores)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tprocess\tmachine\tmachine busy\t")
	for _, s := range all {
		if s.ProcessCPUPerOp == 0 {
			continue
		}
		machine, busy := "?", "?"
		if s.MachineCPUPerOp > 0 {
			machine, busy = ms(s.MachineCPUPerOp), fmt.Sprintf("%.0f%%", 100*s.Busy)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", s.Name, ms(s.ProcessCPUPerOp), machine, busy)
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
