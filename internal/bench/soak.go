package bench

import (
	"bytes"
	"context"
	"fmt"
	"runtime/metrics"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// phaseSoak is the soak's phase: its windows are filed as "soak#1",
// "soak#2", … so each window's requests are counted apart.
const phaseSoak = "soak"

// soakTables are the tables the browser flows fill, in the order reported.
var soakTables = []string{"sso_sessions", "client_sessions", "oauth_authorize_codes", "oauth_access_tokens",
	"oauth_refresh_tokens", "login_flows", "audit_log", "outbox"}

// soakMinLastToFirst is how much of its first window's throughput each
// flow must keep in its last for the soak's target: throughput holds.
const soakMinLastToFirst = 0.80

// Soak is a long run of the browser flows with the janitor running:
// whether throughput holds as the tables grow.
type Soak struct {
	Duration time.Duration `json:"duration_ns"`
	Window   time.Duration `json:"window_ns"`
	// JanitorInterval is the provider's janitor interval during the soak.
	JanitorInterval time.Duration `json:"janitor_interval_ns"`
	// Prefill is how many rows each grown table got before the soak.
	Prefill int `json:"prefill_rows,omitempty"`
	// StandInVacuums is how many times the soak ran VACUUM (ANALYZE) on
	// its database because the server has autovacuum off (standInVacuum).
	StandInVacuums int          `json:"stand_in_vacuums,omitempty"`
	Flows          []SoakFlow   `json:"flows"`
	Windows        []SoakWindow `json:"windows"`
}

// SoakFlow is one flow of the soak over the whole run.
type SoakFlow struct {
	Name    string `json:"name"`
	Workers int    `json:"workers"`
	Stats
	// LastToFirst is the last window's throughput over the first's.
	LastToFirst float64 `json:"last_to_first"`
}

// SoakWindow is one window of the soak.
type SoakWindow struct {
	// End is the window's end, from the soak's start.
	End time.Duration `json:"end_ns"`
	// Flows are the flows' measurements in the window, in Soak.Flows'
	// order.
	Flows []Stats `json:"flows"`
	// Rows are the tables' row counts at the window's end.
	Rows map[string]int64 `json:"rows"`
	// SeqRowsRead is how many rows sequential scans of those tables read
	// during the window (pg_stat_user_tables.seq_tup_read), by table: a
	// lookup without an index reads a table whole, and its cost grows with
	// the table. Autovacuums counts the autovacuum and autoanalyze runs on
	// them that finished in the window.
	SeqRowsRead map[string]int64 `json:"seq_rows_read"`
	Autovacuums int64            `json:"autovacuums"`
	// WALBytes and WALFullPages are the write-ahead log the whole server
	// wrote in the window (pg_stat_wal), and how many of its records were
	// full-page images: the first change to a page after a checkpoint logs
	// the whole page, and inserts into indexes of random keys (token
	// hashes, uuids) touch pages that many more distinct the larger the
	// index, so the log per operation grows with the tables.
	WALBytes     int64 `json:"wal_bytes"`
	WALFullPages int64 `json:"wal_fpi"`
	// RoundTrips are the provider's requests in the window: their round
	// trips and time in the handler.
	RoundTrips []RoundTrips `json:"round_trips"`
	RSS        uint64       `json:"rss_bytes"`
	// HeapLive is the Go heap marked live by the last collection, and
	// GCCycles the collections finished in the window: a live heap that
	// grows toward the soft memory limit makes the collector run more
	// often, and argon2id, which allocates its memory per hash, pays.
	HeapLive uint64 `json:"heap_live_bytes"`
	GCCycles uint64 `json:"gc_cycles"`
}

// gcReading is the live heap and the collections so far.
func gcReading() (live, cycles uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	for i, v := range []*uint64{&live, &cycles} {
		if s[i].Value.Kind() == metrics.KindUint64 {
			*v = s[i].Value.Uint64()
		}
	}
	return live, cycles
}

// tableStats is a reading of pg_stat_user_tables for the soak's tables.
type tableStats struct {
	rows             map[string]int64
	seqRead          map[string]int64
	autovacuums      int64
	walBytes, walFPI int64
}

func readTableStats(ctx context.Context, conn *pgx.Conn) (tableStats, error) {
	ts := tableStats{rows: map[string]int64{}, seqRead: map[string]int64{}}
	for _, t := range soakTables {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return ts, fmt.Errorf("bench: count %s: %w", t, err)
		}
		ts.rows[t] = n
	}
	// Statistics are flushed by each backend at most once a second; a
	// reading taken at once is slightly behind, the next one catches up.
	rows, err := conn.Query(ctx, `SELECT relname, coalesce(seq_tup_read, 0),
			autovacuum_count + autoanalyze_count
		FROM pg_stat_user_tables WHERE relname = ANY($1)`, soakTables)
	if err != nil {
		return ts, fmt.Errorf("bench: table statistics: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name        string
			seq, vacuum int64
		)
		if err := rows.Scan(&name, &seq, &vacuum); err != nil {
			return ts, err
		}
		ts.seqRead[name] = seq
		ts.autovacuums += vacuum
	}
	if err := rows.Err(); err != nil {
		return ts, err
	}
	// pg_stat_wal is PostgreSQL 14's; before it the columns stay zero.
	conn.QueryRow(ctx, `SELECT wal_bytes::bigint, wal_fpi FROM pg_stat_wal`).Scan(&ts.walBytes, &ts.walFPI) //nolint:errcheck
	return ts, nil
}

// prefill inserts n rows into each of the tables the flows grow, as if the
// provider had been busy for a while: live sessions of the seeded accounts,
// each held by app A, a used code, an access and a refresh token per
// session (doc is a real code-flow token's stored request), and as many
// audit records; in batches, then ANALYZE. Their expiry is the default
// lifetimes' (a code is swept an hour after its minute), so the janitor
// keeps them through a short soak as it would on a busy provider.
func prefill(ctx context.Context, conn *pgx.Conn, n int, doc []byte) error {
	const batch = 20000
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		_, err := conn.Exec(ctx, `
			WITH u AS (SELECT array_agg(id) AS ids FROM users),
			s AS (
				INSERT INTO sso_sessions (cookie_hash, user_id, idle_expires_at, absolute_expires_at, auth_time, amr, acr)
				SELECT sha256(gen_random_uuid()::text::bytea), u.ids[1 + g % cardinality(u.ids)],
					now() + interval '8 hours', now() + interval '7 days', now(), '{pwd,otp}', 'urn:idp:acr:mfa'
				FROM generate_series(1, $1) g, u
				RETURNING id, user_id
			), cs AS (
				INSERT INTO client_sessions (sid, client_id) SELECT id, $3 FROM s
			), c AS (
				INSERT INTO oauth_authorize_codes (signature_hash, request_id, client_id, subject, sid, active, requested_at, expires_at, request)
				SELECT sha256(gen_random_uuid()::text::bytea), gen_random_uuid()::text, $3, user_id::text, id, false, now(), now() + interval '1 minute', $2
				FROM s
			), a AS (
				INSERT INTO oauth_access_tokens (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
				SELECT sha256(gen_random_uuid()::text::bytea), gen_random_uuid()::text, $3, user_id::text, id, now(), now() + interval '1 hour', $2
				FROM s
			), rt AS (
				INSERT INTO oauth_refresh_tokens (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
				SELECT sha256(gen_random_uuid()::text::bytea), gen_random_uuid()::text, $3, user_id::text, id, now(), now() + interval '30 days', $2
				FROM s
			)
			INSERT INTO audit_log (actor, action, target) SELECT 'user:' || user_id, 'bench.prefill', 'user:' || user_id FROM s`,
			k, doc, appAID)
		if err != nil {
			return fmt.Errorf("bench: prefill: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("bench: prefill: %w", err)
	}
	return nil
}

// soak runs full sign-in and silent SSO at once, half the workers each,
// for the configured duration, and reports each window.
func (r *runner) soak(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	top := cfg.TargetConcurrency()
	signInWorkers := max(1, top/2)
	ssoWorkers := max(1, top-signInWorkers)
	browsers, err := r.signedInBrowsers(ctx, ssoWorkers)
	if err != nil {
		return err
	}
	accounts, err := r.mfaAccounts(ctx, cfg.Soak, signInWorkers)
	if err != nil {
		return err
	}
	flows := []struct {
		name    string
		workers int
		fn      op
	}{
		{ScenarioFullSignIn, signInWorkers, r.fullSignIn(accounts)},
		{ScenarioSilentSSO, ssoWorkers, r.silentSSO(browsers)},
	}
	conn, err := pgx.Connect(ctx, r.in.dbURL)
	if err != nil {
		return fmt.Errorf("bench: soak: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The row counts go through the primary keys, so the sequential scans
	// counted are the provider's, not the counting's.
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		return fmt.Errorf("bench: soak: %w", err)
	}
	if cfg.Prefill > 0 {
		start := time.Now()
		if err := prefill(ctx, conn, cfg.Prefill, r.codeFlowDoc); err != nil {
			return err
		}
		r.logf("soak: prefilled %d rows in each of sessions, client sessions, codes, access and refresh tokens and the audit log in %s",
			cfg.Prefill, time.Since(start).Round(time.Millisecond))
	}

	s := &Soak{Duration: cfg.Soak, Window: cfg.SoakWindow, JanitorInterval: r.in.srv.Config.JanitorInterval, Prefill: cfg.Prefill}
	for _, f := range flows {
		s.Flows = append(s.Flows, SoakFlow{Name: f.name, Workers: f.workers})
	}
	rep.Soak = s
	r.logf("soak: %s of %s (%d workers) and %s (%d workers) at once, reported every %s; janitor every %s",
		cfg.Soak, ScenarioFullSignIn, signInWorkers, ScenarioSilentSSO, ssoWorkers, cfg.SoakWindow, s.JanitorInterval)

	r.rss.setPhase(phaseSoak)
	var off bool
	if err := conn.QueryRow(ctx, `SELECT NOT (current_setting('autovacuum')::bool AND current_setting('track_counts')::bool)`).Scan(&off); err != nil {
		return fmt.Errorf("bench: soak: %w", err)
	}
	if off {
		stop, err := r.standInVacuum(ctx, cfg.SoakWindow)
		if err != nil {
			return err
		}
		defer func() { s.StandInVacuums = stop() }()
		r.logf("soak: autovacuum is off on this server: the soak runs VACUUM (ANALYZE) every %s in its place", cfg.SoakWindow)
	}
	runFlows := func(d time.Duration) []*sample {
		out := make([]*sample, len(flows))
		var wg sync.WaitGroup
		for i, f := range flows {
			wg.Go(func() { out[i] = labelledLoad(ctx, f.name, top, f.workers, d, f.fn) })
		}
		wg.Wait()
		return out
	}
	runFlows(warmup(cfg.SoakWindow)) // unmeasured
	prev, err := readTableStats(ctx, conn)
	if err != nil {
		return err
	}
	_, prevCycles := gcReading()
	totals := make([]*sample, len(flows))
	for i := range totals {
		totals[i] = &sample{}
	}
	// Whole windows only: a short last window would compare its ramp-down
	// with a full first one.
	windows := max(1, int(cfg.Soak/cfg.SoakWindow))
	start := time.Now()
	for i := 1; i <= windows && ctx.Err() == nil; i++ {
		d := cfg.SoakWindow
		ph := fmt.Sprintf("%s#%d", phaseSoak, i)
		r.in.meter.setPhase(ph)
		samples := runFlows(d)
		r.in.meter.setPhase("")
		now, err := readTableStats(ctx, conn)
		if err != nil {
			return err
		}
		rss, _, _ := readStatus()
		live, cycles := gcReading()
		w := SoakWindow{End: time.Since(start), Rows: now.rows, SeqRowsRead: map[string]int64{},
			Autovacuums: now.autovacuums - prev.autovacuums, RoundTrips: r.in.meter.report(ph), RSS: rss,
			WALBytes: now.walBytes - prev.walBytes, WALFullPages: now.walFPI - prev.walFPI,
			HeapLive: live, GCCycles: cycles - prevCycles}
		prevCycles = cycles
		for _, t := range soakTables {
			w.SeqRowsRead[t] = now.seqRead[t] - prev.seqRead[t]
		}
		var line []string
		for j, smp := range samples {
			totals[j].add(smp)
			st := smp.stats()
			w.Flows = append(w.Flows, st)
			line = append(line, fmt.Sprintf("%s %.1f/s", flows[j].name, st.PerSec))
		}
		s.Windows = append(s.Windows, w)
		r.logf("  soak %s: %s; %d sessions, %d codes, %d access tokens", w.End.Round(time.Second), strings.Join(line, ", "),
			w.Rows["sso_sessions"], w.Rows["oauth_authorize_codes"], w.Rows["oauth_access_tokens"])
		prev = now
	}
	for j := range s.Flows {
		s.Flows[j].Stats = totals[j].stats()
		if n := len(s.Windows); n > 0 {
			if first := s.Windows[0].Flows[j].PerSec; first > 0 {
				s.Flows[j].LastToFirst = s.Windows[n-1].Flows[j].PerSec / first
			}
		}
	}
	if w := accounts.starved.Load(); w > 0 {
		r.logf("soak: %d waits for a fresh TOTP step: seed more accounts", w)
	}
	r.phase("")
	return ctx.Err()
}

// standInVacuum does autovacuum's work on the run's database, at once and
// then every interval while the soak runs, for a server that has autovacuum
// off; stop ends it and says how many runs finished. Without it no table
// is ever analyzed, and nothing replans what the provider's connections
// prepared while the tables were nearly empty: the generic plan PostgreSQL
// caches for a prepared statement after its fifth run. Made on a page or
// two of sessions, the session checks by id and by cookie
// (sessions.LiveSQL, Manager.CurrentUser) kept a full scan of a partial index
// of the live sessions (sso_sessions_expiry_idx, sso_sessions_user_idx)
// filtered by the id, so each silent SSO and each code exchange read every
// live session, more as sign-ins added them (issue 18). An ANALYZE
// invalidates those plans; autovacuum's runs keep them in step with the
// tables on any server configured as a provider's should be.
func (r *runner) standInVacuum(ctx context.Context, every time.Duration) (stop func() int, err error) {
	conn, err := pgx.Connect(ctx, r.in.dbURL)
	if err != nil {
		return nil, fmt.Errorf("bench: soak: %w", err)
	}
	if err := vacuumAnalyze(ctx, conn); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	runs := 1
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close(context.WithoutCancel(ctx))
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := vacuumAnalyze(ctx, conn); err != nil {
				if ctx.Err() == nil {
					r.logf("soak: %v", err)
				}
				return
			}
			runs++
		}
	}()
	return func() int {
		cancel()
		<-done
		return runs
	}, nil
}

// vacuumAnalyze vacuums and analyzes every table of conn's database.
func vacuumAnalyze(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		return fmt.Errorf("bench: vacuum: %w", err)
	}
	return nil
}

// writeSoak prints the soak's windows: each flow's throughput and p50, the
// tables' sizes, the rows read by sequential scans and the autovacuums,
// then each flow's last window against its first, and the requests whose
// time in the handler changed between the first and the last window.
func writeSoak(b *bytes.Buffer, s *Soak) {
	if s == nil {
		return
	}
	var flows []string
	for _, f := range s.Flows {
		flows = append(flows, fmt.Sprintf("%s (%d workers)", f.Name, f.Workers))
	}
	prefilled := ""
	if s.Prefill > 0 {
		prefilled = fmt.Sprintf(", %d rows per table prefilled", s.Prefill)
	}
	fmt.Fprintf(b, "\nsoak: %s of %s at once, janitor every %s%s; rows at the end of each window\n",
		s.Duration, strings.Join(flows, " and "), s.JanitorInterval, prefilled)
	if s.StandInVacuums > 0 {
		fmt.Fprintf(b, "autovacuum is off on this server: the soak ran VACUUM (ANALYZE) %d times in its place, every %s\n",
			s.StandInVacuums, s.Window)
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "window\t"
	for _, f := range s.Flows {
		head += f.Name + "/s\tp50\t"
	}
	head += "errors\t"
	for _, t := range soakTables {
		head += soakColumn(t) + "\t"
	}
	head += "seq rows read\tautovacuums\tWAL KB/op\tfull pages/op\tRSS MB\theap live MB\tGCs\t"
	fmt.Fprintln(tw, head)
	for _, w := range s.Windows {
		line := minSec(w.End) + "\t"
		var errs uint64
		for _, st := range w.Flows {
			line += fmt.Sprintf("%.1f\t%s\t", st.PerSec, ms(st.P50))
			errs += st.Errors
		}
		line += fmt.Sprintf("%d\t", errs)
		var seq int64
		for _, t := range soakTables {
			line += fmt.Sprintf("%d\t", w.Rows[t])
			seq += w.SeqRowsRead[t]
		}
		var ops uint64
		for _, st := range w.Flows {
			ops += st.Ops
		}
		walKB, fpi := "-", "-"
		if ops > 0 && w.WALBytes > 0 {
			walKB = fmt.Sprintf("%.1f", float64(w.WALBytes)/1024/float64(ops))
			fpi = fmt.Sprintf("%.1f", float64(w.WALFullPages)/float64(ops))
		}
		line += fmt.Sprintf("%d\t%d\t%s\t%s\t%s\t%s\t%d\t", seq, w.Autovacuums, walKB, fpi, rssMB(w.RSS), rssMB(w.HeapLive), w.GCCycles)
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	var ratios []string
	for _, f := range s.Flows {
		ratios = append(ratios, fmt.Sprintf("%s %.2f (%.1f/s over the run)", f.Name, f.LastToFirst, f.PerSec))
	}
	fmt.Fprintf(b, "last window / first: %s\n", strings.Join(ratios, ", "))
	if n := len(s.Windows); n > 1 {
		fmt.Fprintf(b, "time in the handler, first window → last\n")
		tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "request\tfirst\tlast\ttrips first\ttrips last\t")
		last := map[string]RoundTrips{}
		for _, rt := range s.Windows[n-1].RoundTrips {
			last[rt.Request] = rt
		}
		for _, rt := range s.Windows[0].RoundTrips {
			l, ok := last[rt.Request]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t\n", rt.Request, ms(rt.ServerTime), ms(l.ServerTime), rt.Avg, l.Avg)
		}
		tw.Flush()
	}
}

// soakColumn shortens a table's name for the soak's header.
func soakColumn(table string) string {
	return strings.TrimPrefix(table, "oauth_")
}

func minSec(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
