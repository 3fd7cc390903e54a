package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/idp/idp/internal/server"
	"github.com/idp/idp/internal/sso/keys/libcrypto"
	"github.com/idp/idp/internal/users"
)

// Config is one run.
type Config struct {
	// DatabaseURL names a PostgreSQL server (any database on it, as a user
	// that may create databases); the run gets a fresh database there.
	DatabaseURL string
	// Duration of each floor and scenario, after a warm-up of a tenth of it
	// (at most a second) that is not measured.
	Duration time.Duration
	// Concurrency lists the worker counts: every floor and scenario is
	// measured at each, its floor at the same count (the argon2id floor
	// always uses GOMAXPROCS). The targets are judged at the largest.
	Concurrency []int
	// Sessions and Apps shape revoke-all: one user with Sessions sessions,
	// each held by Apps apps.
	Sessions, Apps int
	// Only restricts the run to these scenarios (all when empty).
	Only []string
	// MemoryLimit is the soft memory limit set on the process, as idp serve
	// sets it (server.TuneMemory); 0 keeps the runtime's defaults.
	MemoryLimit int64
	// IDTokenAlg is the apps' id_token_signed_response_alg, which signs
	// their ID tokens and logout tokens: "RS256" (the default) or "ES256".
	IDTokenAlg string
	// Soak, when set, replaces the measurements: the browser flows (full
	// sign-in and silent SSO) run together for this long, with the janitor
	// running, reported every SoakWindow with the sizes of the tables they
	// fill.
	Soak, SoakWindow time.Duration
	// Prefill, with Soak, first inserts this many rows into each table the
	// browser flows grow, so a short soak starts where a busy provider is.
	Prefill int
	// JanitorInterval is the in-process provider's janitor interval (0:
	// serve's).
	JanitorInterval time.Duration
	// KeepDatabase leaves the database in place after the run.
	KeepDatabase bool
	// Log receives progress lines and the provider's warnings and errors.
	Log io.Writer
}

// DefaultConcurrency is 4 and 16 workers: 4 keeps a small provider busy
// without queueing, 16 is the concurrency people run (issue 18's load
// generator used 16 clients), where the targets are judged.
func DefaultConcurrency() []int { return []int{4, 16} }

// TargetConcurrency is the worker count the targets are judged at: the
// largest measured.
func (c *Config) TargetConcurrency() int { return slices.Max(c.Concurrency) }

func (c *Config) check() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("bench: no database URL")
	case c.Duration <= 0:
		return errors.New("bench: duration must be positive")
	case len(c.Concurrency) == 0 || slices.Min(c.Concurrency) <= 0:
		return errors.New("bench: concurrency must be positive")
	case c.Sessions <= 0 || c.Apps <= 0:
		return errors.New("bench: sessions and apps must be positive")
	case c.Soak < 0 || c.SoakWindow < 0 || c.JanitorInterval < 0 || c.Prefill < 0:
		return errors.New("bench: soak, its window and the janitor interval must not be negative")
	}
	if c.Soak > 0 && c.SoakWindow == 0 {
		c.SoakWindow = min(30*time.Second, max(c.Soak/10, time.Second))
	}
	switch c.IDTokenAlg {
	case "":
		c.IDTokenAlg = "RS256"
	case "RS256", "ES256":
	default:
		return fmt.Errorf("bench: ID token algorithm must be RS256 or ES256, not %q", c.IDTokenAlg)
	}
	for _, s := range c.Only {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("bench: unknown scenario %q (scenarios: %v)", s, Scenarios)
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

func (c *Config) wants(s string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, s) }

// runner holds what the phases of a run share.
type runner struct {
	cfg      Config
	in       *instance
	tr       *http.Transport
	hc       *http.Client // apps and resource servers: no cookies, no redirects
	provider *oidc.Provider
	resource *app
	signer   *signer // the private_key_jwt client
	appA     *app
	appB     *app
	console  *app
	browsers []*browser
	rss      *rssSampler
	// ccDoc and codeFlowDoc are the stored request documents of a real
	// client_credentials token and of a real code-flow token.
	ccDoc, codeFlowDoc []byte
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "idp-bench: "+format+"\n", args...)
}

// phase names what is being measured, for the round-trip counts and the
// memory samples ("" between measurements).
func (r *runner) phase(p string) {
	r.in.meter.setPhase(p)
	if p != "" {
		r.rss.setPhase(p)
	}
}

// Run performs a whole run and returns its report. An error means the run
// could not be made; failures of the provider under load are in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	// The provider runs in this process, so the process gets serve's
	// memory tuning, which governs the load generator too.
	tuned := server.TuneMemory(cfg.MemoryLimit, os.Getenv)
	r := &runner{cfg: cfg, rss: startRSS(100 * time.Millisecond)}
	r.rss.setPhase("setup")
	rep := &Report{Started: time.Now().UTC(), Config: ReportConfig{
		Duration: cfg.Duration, Concurrency: cfg.Concurrency, TargetConcurrency: cfg.TargetConcurrency(), Soak: cfg.Soak, SoakWindow: cfg.SoakWindow, Sessions: cfg.Sessions, Apps: cfg.Apps,
		IDTokenAlg: cfg.IDTokenAlg, RSASigner: libcrypto.Version(), Argon2: argon2Params(), GC: gcSettings(tuned, cfg.MemoryLimit),
	}}

	d, err := createDatabase(ctx, cfg.DatabaseURL)
	if err != nil {
		r.rss.finish()
		return nil, err
	}
	r.logf("database %s", d.name)
	defer func() {
		if cfg.KeepDatabase {
			r.logf("kept database %s", redactURL(d.url))
			return
		}
		if err := d.drop(context.WithoutCancel(ctx)); err != nil {
			r.logf("%v", err)
		}
	}()
	if r.in, err = startInstance(ctx, d.url, cfg.JanitorInterval, cfg.Log); err != nil {
		r.rss.finish()
		return nil, err
	}
	defer func() {
		if err := r.in.close(); err != nil {
			r.logf("stop provider: %v", err)
		}
	}()
	rep.Machine = describeMachine(ctx, r.in.pool)
	rep.Config.PoolMaxConns = r.in.pool.Config().MaxConns
	rep.Issuer = r.in.issuer

	err = r.run(ctx, rep)
	rep.Machine.LoadAfter = loadAvg()
	rep.Memory = r.rss.finish()
	rep.ServerErrors = r.in.serverErrors.Load()
	if err != nil {
		return nil, err
	}
	rep.evaluate()
	return rep, nil
}

func (r *runner) run(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	top := cfg.TargetConcurrency()
	r.tr = newTransport(top + 4)
	defer r.tr.CloseIdleConnections()
	r.hc = &http.Client{Transport: r.tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var err error
	if r.provider, err = oidc.NewProvider(oidc.ClientContext(ctx, r.hc), r.in.issuer); err != nil {
		return fmt.Errorf("bench: discovery: %w", err)
	}
	if err := r.seedApps(ctx); err != nil {
		return err
	}
	// One real token of each kind, for the floors' and seeds' row documents.
	if _, err := r.issueTokens(ctx, 1); err != nil {
		return err
	}
	if _, err := r.signedInBrowsers(ctx, 1); err != nil {
		return err
	}
	for _, d := range []struct {
		dst    *[]byte
		client string
	}{{&r.ccDoc, resourceID}, {&r.codeFlowDoc, appAID}} {
		if err := r.in.pool.QueryRow(ctx, `SELECT request::text FROM oauth_access_tokens WHERE client_id = $1 LIMIT 1`,
			d.client).Scan(d.dst); err != nil {
			return fmt.Errorf("bench: read a token row: %w", err)
		}
	}
	if cfg.Soak > 0 {
		return r.soak(ctx, rep)
	}

	floorOps := map[string]op{FloorArgon2: argon2Op}
	if cfg.wants(ScenarioClientCredentials) || cfg.wants(ScenarioPrivateKeyJWT) || cfg.wants(ScenarioDPoPClientCredentials) ||
		cfg.wants(ScenarioIntrospection) ||
		cfg.wants(ScenarioRefresh) || cfg.wants(ScenarioSilentSSO) || cfg.wants(ScenarioPasskeySignIn) {
		fs, err := startFloorServer(ctx, r.in.dbURL, r.ccDoc, top)
		if err != nil {
			return err
		}
		defer fs.close()
		if err := fs.seedSelect(ctx, 1000); err != nil {
			return err
		}
		floorOps[FloorInsert] = fs.insertOp(r.hc)
		floorOps[FloorSelect] = fs.selectOp(r.hc)
	}
	type floorKey struct {
		name    string
		workers int
	}
	floors := map[floorKey]*sample{}
	// pair measures a scenario at each concurrency, interleaved with its
	// floor at the same concurrency, and files both. fn makes the
	// scenario's op for that many workers.
	pair := func(name string, fn func(workers int) (op, error), note func() string) error {
		f := floorOf[name]
		for _, c := range cfg.Concurrency {
			scenarioOp, err := fn(c)
			if err != nil {
				return err
			}
			r.logf("scenario %s at %d workers (against the %s floor)", name, c, f)
			fs, ss, ratios := r.measurePair(ctx, c, f, floorOps[f], name, scenarioOp)
			k := floorKey{f, c}
			if floors[k] == nil {
				floors[k] = &sample{}
			}
			floors[k].add(fs)
			fst, sst := fs.stats(), ss.stats()
			ph := phaseName(name, c)
			s := Scenario{Name: name, Concurrency: c, Description: describe[name], Stats: sst, Floor: f, FloorPerSec: fst.PerSec,
				SliceRatios: ratios, RoundTrips: r.in.meter.report(ph), MaxRSS: r.rss.phaseMax(ph)}
			if fst.PerSec > 0 {
				s.Ratio = sst.PerSec / fst.PerSec
			}
			s.RoundTripsPerOp = roundTripsPerOp(s.RoundTrips, sst.Ops)
			if note != nil {
				s.Note = note()
			}
			rep.Scenarios = append(rep.Scenarios, s)
		}
		return nil
	}
	constant := func(o op) func(int) (op, error) { return func(int) (op, error) { return o, nil } }

	if cfg.wants(ScenarioClientCredentials) {
		if err := pair(ScenarioClientCredentials, constant(r.clientCredentials()), nil); err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioPrivateKeyJWT) {
		if err := pair(ScenarioPrivateKeyJWT, constant(r.privateKeyJWT()), nil); err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioDPoPClientCredentials) {
		if err := pair(ScenarioDPoPClientCredentials, r.dpopClientCredentials, nil); err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioIntrospection) {
		tokens, err := r.issueTokens(ctx, 256)
		if err != nil {
			return err
		}
		if err := pair(ScenarioIntrospection, constant(r.introspection(tokens)), nil); err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioRefresh) {
		err := pair(ScenarioRefresh, func(c int) (op, error) {
			browsers, err := r.signedInBrowsers(ctx, c)
			if err != nil {
				return nil, err
			}
			chains, err := r.refreshChains(ctx, browsers)
			if err != nil {
				return nil, err
			}
			return r.refresh(chains), nil
		}, nil)
		if err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioSilentSSO) {
		err := pair(ScenarioSilentSSO, func(c int) (op, error) {
			browsers, err := r.signedInBrowsers(ctx, c)
			if err != nil {
				return nil, err
			}
			return r.silentSSO(browsers), nil
		}, nil)
		if err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioFullSignIn) {
		// Each account signs in at most once per 30 s TOTP step, across
		// the levels, which run one after the other.
		measured := time.Duration(len(cfg.Concurrency)) * (cfg.Duration + 2*warmup(cfg.Duration))
		pool, err := r.mfaAccounts(ctx, measured, top)
		if err != nil {
			return err
		}
		err = pair(ScenarioFullSignIn, constant(r.fullSignIn(pool)), func() string {
			if w := pool.starved.Swap(0); w > 0 {
				return fmt.Sprintf("%d waits for a fresh TOTP step: seed more accounts", w)
			}
			return ""
		})
		if err != nil {
			return err
		}
	}
	if cfg.wants(ScenarioPasskeySignIn) {
		auths, err := r.passkeyUsers(ctx, top)
		if err != nil {
			return err
		}
		if err := pair(ScenarioPasskeySignIn, constant(r.passkeySignIn(auths)), nil); err != nil {
			return err
		}
	}
	for _, c := range cfg.Concurrency {
		for _, f := range []string{FloorArgon2, FloorInsert, FloorSelect} {
			if s, ok := floors[floorKey{f, c}]; ok {
				rep.Floors = append(rep.Floors, Floor{Name: f, Concurrency: c, Description: describe[f], Stats: s.stats(),
					MaxRSS: r.rss.phaseMax(phaseName("floor:"+f, c))})
			}
		}
	}

	if cfg.wants(ScenarioRevokeAll) {
		r.logf("scenario %s: %d sessions × %d apps", ScenarioRevokeAll, cfg.Sessions, cfg.Apps)
		r.rss.setPhase(ScenarioRevokeAll)
		f, err := r.revokeAll(ctx, cfg.Sessions, cfg.Apps)
		if err != nil {
			return err
		}
		f.RoundTrips = r.in.meter.report(ScenarioRevokeAll)
		rep.Fanout = f
	}
	return ctx.Err()
}

// mfaAccounts seeds accounts with TOTP for full sign-ins over measured
// (at most workers at a time). Each account signs in at most once per 30 s
// TOTP step: it seeds enough for the fastest argon2id rate seen, over
// measured or one step, twice over, and a few per worker.
func (r *runner) mfaAccounts(ctx context.Context, measured time.Duration, workers int) (*mfaPool, error) {
	r.rss.setPhase("floor:" + FloorArgon2)
	hashers := runtime.GOMAXPROCS(0)
	est := load(ctx, hashers, max(warmup(r.cfg.Duration), 500*time.Millisecond), argon2Op)
	fastest := max(est.h.min, time.Millisecond)
	rate := float64(hashers) / fastest.Seconds()
	window := min(measured, totpPeriod*time.Second).Seconds()
	n := int(math.Ceil(rate*window*2)) + 4*workers
	start := time.Now()
	pool, err := r.seedMFAUsers(ctx, n)
	if err != nil {
		return nil, err
	}
	r.logf("seeded %d accounts with TOTP in %s (argon2id at most %.1f/s)", n, time.Since(start).Round(time.Millisecond), rate)
	return pool, nil
}

// phaseName files a measurement at a concurrency: "silent_sso@16".
func phaseName(name string, workers int) string { return fmt.Sprintf("%s@%d", name, workers) }

// roundTripsPerOp is the database round trips of all of an op's requests,
// per successful op.
func roundTripsPerOp(list []RoundTrips, ops uint64) float64 {
	if ops == 0 {
		return 0
	}
	var trips float64
	for _, rt := range list {
		trips += rt.Avg * float64(rt.Requests)
	}
	return trips / float64(ops)
}

// warmup is the unmeasured lead-in of a measurement: it fills the pools,
// the statement caches and the connections.
func warmup(d time.Duration) time.Duration { return min(d/10, time.Second) }

// rounds is how many slices a measurement is cut into, alternating with
// the floor's: both then see the same background load, which on a shared
// machine drifts by more than the effects measured.
func rounds(d time.Duration) int {
	if d < time.Second {
		return 1
	}
	return 5
}

// measurePair warms up the floor and the scenario, then measures each with
// workers workers for the configured duration, in alternating slices; it
// also returns the scenario's ratio to the floor in each pair of slices.
func (r *runner) measurePair(ctx context.Context, workers int, floor string, floorFn op, scenario string, fn op) (fs, ss *sample, ratios []float64) {
	floorWorkers := workers
	if floor == FloorArgon2 {
		floorWorkers = runtime.GOMAXPROCS(0)
	}
	fphase, sphase := phaseName("floor:"+floor, workers), phaseName(scenario, workers)
	r.rss.setPhase(fphase)
	load(ctx, floorWorkers, warmup(r.cfg.Duration), floorFn)
	r.rss.setPhase(sphase)
	load(ctx, workers, warmup(r.cfg.Duration), fn)

	fs, ss = &sample{}, &sample{}
	n := rounds(r.cfg.Duration)
	slice := r.cfg.Duration / time.Duration(n)
	for range n {
		r.rss.setPhase(fphase)
		f := labelledLoad(ctx, "floor:"+floor, workers, floorWorkers, slice, floorFn)
		r.phase(sphase)
		s := labelledLoad(ctx, scenario, workers, workers, slice, fn)
		r.phase("")
		fs.add(f)
		ss.add(s)
		if f.rate() > 0 {
			ratios = append(ratios, s.rate()/f.rate())
		}
	}
	f, s := fs.stats(), ss.stats()
	r.logf("  %s floor %.1f/s; %s %.1f/s (%.1f%%), p50 %s, p99 %s, %d errors", floor, f.PerSec, scenario, s.PerSec,
		100*s.PerSec/max(f.PerSec, 1e-9), s.P50, s.P99, s.Errors+f.Errors)
	return fs, ss, ratios
}

// labelledLoad is load with the CPU it costs measured, and its workers'
// CPU profile samples labelled with the phase and the level's worker count,
// as the provider's handlers are (meter.wrap).
func labelledLoad(ctx context.Context, phase string, level, concurrency int, d time.Duration, fn op) (s *sample) {
	start := readCPU()
	pprof.Do(ctx, pprof.Labels("phase", phase, "workers", strconv.Itoa(level)), func(ctx context.Context) {
		s = load(ctx, concurrency, d, fn)
	})
	s.cpu = cpuSince(start)
	return s
}

// argon2Params describes the password hash the sign-ins and the argon2id
// floor pay for.
func argon2Params() string {
	p := users.DefaultParams
	return fmt.Sprintf("m=%d KiB, t=%d, p=%d", p.Memory, p.Time, p.Threads)
}

// gcSettings describes the garbage collector's settings for the report.
func gcSettings(tuned bool, limit int64) string {
	if tuned {
		return fmt.Sprintf("memory limit %d MiB (idp serve's tuning)", limit>>20)
	}
	gogc, memlimit := os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT")
	if gogc == "" && memlimit == "" {
		return "runtime defaults"
	}
	return fmt.Sprintf("GOGC=%q GOMEMLIMIT=%q", gogc, memlimit)
}
