// Command idp-bench measures the identity provider: one command creates a
// fresh database, starts a provider in-process on a loopback port, seeds
// the users and clients it needs, and prints throughput, p50/p99 latency
// and errors for client_credentials, introspection, refresh, silent SSO,
// full sign-in (password + TOTP) and an administrator's revoke-all with
// back-channel logout fan-out, at 4 and at 16 workers, each next to the
// floor the machine allows for the same unit of work at the same
// concurrency, plus the database round trips per request and
// the resident memory, and PASS/FAIL per target.
//
//	go run ./cmd/idp-bench                       # every scenario, 10 s each
//	go run ./cmd/idp-bench --only refresh --duration 3s --json
//	go run ./cmd/idp-bench --soak 5m             # do the browser flows hold as the tables grow?
//
// The work is in internal/bench; this is its command line.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/idp/idp/internal/bench"
	"github.com/idp/idp/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }

// errMissed is --check's verdict on a run that missed a target.
var errMissed = errors.New("targets missed")

func exitCode(err error, w io.Writer) int {
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(w, "idp-bench: %v\n", err)
		return 2
	default:
		fmt.Fprintf(w, "idp-bench: %v\n", err)
		return 1
	}
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idp-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: idp-bench [flags]\n\nscenarios: %s\n\n", strings.Join(bench.Scenarios, ", "))
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.StringVar(&cfg.DatabaseURL, "database-url", "",
		"PostgreSQL server `URL`; the run creates (and drops) a fresh database on it\n(default $IDP_BENCH_DATABASE_URL, else the private cluster of scripts/pg.sh)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each measurement, after a warm-up of a tenth of it (at most 1s)")
	levels := intList(bench.DefaultConcurrency())
	fs.Var(&levels, "concurrency", "comma-separated `workers` counts: every floor and scenario is measured at each,\nthe targets judged at the largest (default 4,16)")
	fs.DurationVar(&cfg.Soak, "soak", 0, "instead of the measurements, run full sign-in and silent SSO at once for this `duration`\n(the largest --concurrency, half each) with the janitor running, and report each window")
	fs.DurationVar(&cfg.SoakWindow, "soak-window", 0, "the soak's reporting `window` (default a tenth of --soak, between 1s and 30s)")
	fs.IntVar(&cfg.Prefill, "prefill", 0, "with --soak, first insert this many `rows` into each table the flows grow\n(sessions, client sessions, codes, access and refresh tokens, audit log)")
	fs.DurationVar(&cfg.JanitorInterval, "janitor-interval", 0, "the provider's janitor `interval` (default serve's, 30s)")
	fs.IntVar(&cfg.Sessions, "sessions", 1000, "revoke_all: sessions of the user")
	fs.IntVar(&cfg.Apps, "apps", 3, "revoke_all: apps holding each session, each with a back-channel receiver")
	fs.StringVar(&cfg.IDTokenAlg, "id-token-alg", "RS256", "the apps' ID token and logout token `algorithm`: RS256 or ES256")
	only := fs.String("only", "", "comma-separated `scenarios` to run (default all)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.BoolVar(&cfg.KeepDatabase, "keep-db", false, "keep the run's database for inspection")
	check := fs.Bool("check", false, "exit with status 1 when a target is missed")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (provider and load alike) to `file`;\nthe load's and the handlers' samples carry a phase label: go tool pprof -tagfocus phase=silent_sso")
	memoryLimit := fs.String("memory-limit", "auto", "the process's soft memory `limit`, as idp serve's --memory-limit: auto, off or a size like 512MiB\n(ignored when GOGC or GOMEMLIMIT is set)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (see idp-bench -h)", fs.Arg(0))}
	}
	cfg.Concurrency = levels
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Only = append(cfg.Only, s)
			}
		}
	}
	switch {
	case cfg.Duration <= 0:
		return usageError{errors.New("--duration must be positive")}
	case len(cfg.Concurrency) == 0 || slices.Min(cfg.Concurrency) <= 0:
		return usageError{errors.New("--concurrency must be positive worker counts, e.g. 4,16")}
	case cfg.Soak < 0 || cfg.SoakWindow < 0 || cfg.JanitorInterval < 0:
		return usageError{errors.New("--soak, --soak-window and --janitor-interval must not be negative")}
	case cfg.SoakWindow > 0 && cfg.Soak == 0:
		return usageError{errors.New("--soak-window needs --soak")}
	case cfg.Prefill < 0:
		return usageError{errors.New("--prefill must not be negative")}
	case cfg.Prefill > 0 && cfg.Soak == 0:
		return usageError{errors.New("--prefill needs --soak")}
	case cfg.Soak > 0 && cfg.SoakWindow > cfg.Soak:
		return usageError{errors.New("--soak-window must not be longer than --soak")}
	case cfg.Sessions <= 0 || cfg.Apps <= 0:
		return usageError{errors.New("--sessions and --apps must be positive")}
	case cfg.IDTokenAlg != "RS256" && cfg.IDTokenAlg != "ES256":
		return usageError{fmt.Errorf("--id-token-alg must be RS256 or ES256, not %q", cfg.IDTokenAlg)}
	}
	limit, err := server.ParseMemoryLimit(*memoryLimit)
	if err != nil {
		return usageError{fmt.Errorf("--memory-limit: %w", err)}
	}
	cfg.MemoryLimit = limit
	for _, s := range cfg.Only {
		if !slices.Contains(bench.Scenarios, s) {
			return usageError{fmt.Errorf("--only: unknown scenario %q (scenarios: %s)", s, strings.Join(bench.Scenarios, ", "))}
		}
	}
	cfg.Log = stderr
	if *quiet {
		cfg.Log = io.Discard
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("IDP_BENCH_DATABASE_URL")
	}
	if cfg.DatabaseURL == "" {
		u, err := privateCluster(ctx, stderr)
		if err != nil {
			return err
		}
		cfg.DatabaseURL = u
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if *check && !rep.Pass {
		return errMissed
	}
	return nil
}

// intList is a flag of comma-separated positive integers: "4,16".
type intList []int

func (l *intList) String() string {
	parts := make([]string, len(*l))
	for i, n := range *l {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(s string) error {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive number of workers", strings.TrimSpace(p))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	*l = out
	return nil
}

// privateCluster runs scripts/pg.sh, found in the working directory or one
// above it, which starts (or reuses) the repository's private PostgreSQL
// cluster and prints its URL.
func privateCluster(ctx context.Context, stderr io.Writer) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		script := filepath.Join(dir, "scripts", "pg.sh")
		if _, err := os.Stat(script); err == nil {
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, script)
			cmd.Stdout, cmd.Stderr = &out, stderr
			if err := cmd.Run(); err != nil {
				return "", fmt.Errorf("scripts/pg.sh: %w", err)
			}
			return strings.TrimSpace(out.String()), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", usageError{errors.New("no database: pass --database-url or set IDP_BENCH_DATABASE_URL " +
				"(or run from the repository, whose scripts/pg.sh starts a private PostgreSQL)")}
		}
		dir = parent
	}
}
