package bench

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// histogram records durations in logarithmic buckets 1% wide from 1µs to
// beyond a minute: constant memory however long the run, and quantiles
// within 1%.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	min    time.Duration
	max    time.Duration
}

const (
	histBuckets = 2000
	histBase    = float64(time.Microsecond)
)

var histGrowth = math.Log(1.01)

func bucketOf(d time.Duration) int {
	if float64(d) <= histBase {
		return 0
	}
	i := int(math.Log(float64(d)/histBase) / histGrowth)
	return min(max(i, 0), histBuckets-1)
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// quantile returns the q-quantile (0 < q ≤ 1): the geometric middle of the
// bucket it falls in, clamped to the observed range.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			d := time.Duration(histBase * math.Exp((float64(i)+0.5)*histGrowth))
			return min(max(d, h.min), h.max)
		}
	}
	return h.max
}

// Stats is the outcome of one measured load.
type Stats struct {
	Ops     uint64        `json:"ops"`
	Errors  uint64        `json:"errors"`
	Elapsed time.Duration `json:"elapsed_ns"`
	PerSec  float64       `json:"ops_per_sec"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
	// FirstErrors are the first few distinct error messages; they never
	// carry a token or a code.
	FirstErrors []string `json:"first_errors,omitempty"`
	// ProcessCPUPerOp is the CPU time this process (provider and load
	// generator) spent per successful operation; MachineCPUPerOp that of
	// the whole machine, PostgreSQL included; Busy the fraction of the
	// machine's CPUs busy meanwhile; PostgresCPUPerOp that of the
	// database server's processes, when it runs on this machine. Zero
	// where not measured.
	ProcessCPUPerOp  time.Duration `json:"process_cpu_per_op_ns,omitempty"`
	PostgresCPUPerOp time.Duration `json:"postgres_cpu_per_op_ns,omitempty"`
	MachineCPUPerOp  time.Duration `json:"machine_cpu_per_op_ns,omitempty"`
	Busy             float64       `json:"machine_busy,omitempty"`
}

const keepErrors = 5

// op is one unit of work of worker w (0 ≤ w < concurrency).
type op func(ctx context.Context, w int) error

// sample accumulates measurements; samples of one thing taken at different
// times add up.
type sample struct {
	h       histogram
	errs    uint64
	first   []string
	elapsed time.Duration
	cpu     cpuSpent // zero unless the load was measured (labelledLoad)
}

func (s *sample) add(o *sample) {
	s.h.merge(&o.h)
	s.cpu.add(o.cpu)
	s.errs += o.errs
	s.elapsed += o.elapsed
	for _, e := range o.first {
		if len(s.first) < keepErrors && !slices.Contains(s.first, e) {
			s.first = append(s.first, e)
		}
	}
}

// rate is successful operations per second.
func (s *sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.h.n) / s.elapsed.Seconds()
}

func (s *sample) stats() Stats {
	st := Stats{Ops: s.h.n, Errors: s.errs, Elapsed: s.elapsed,
		P50: s.h.quantile(0.50), P99: s.h.quantile(0.99), Max: s.h.max, FirstErrors: s.first}
	st.PerSec = s.rate()
	if s.h.n > 0 && s.cpu.process > 0 {
		st.ProcessCPUPerOp = s.cpu.process / time.Duration(s.h.n)
		if !s.cpu.pgUnknown {
			st.PostgresCPUPerOp = s.cpu.postgres / time.Duration(s.h.n)
		}
		if !s.cpu.unknown {
			st.MachineCPUPerOp = s.cpu.busy / time.Duration(s.h.n)
			st.Busy = s.cpu.busy.Seconds() / (s.elapsed.Seconds() * float64(runtime.NumCPU()))
		}
	}
	return st
}

// load runs fn in concurrency workers, each in a loop, until d has passed
// (at least one op per worker) or ctx ends. Latency is that of successful
// ops; the elapsed time runs until the last worker stopped.
func load(ctx context.Context, concurrency int, d time.Duration, fn op) *sample {
	var (
		mu     sync.Mutex
		total  sample
		wg     sync.WaitGroup
		start  = time.Now()
		finish = start.Add(d)
	)
	for w := range concurrency {
		wg.Go(func() {
			var mine sample
			for i := 0; i == 0 || time.Now().Before(finish); i++ {
				if ctx.Err() != nil {
					break
				}
				t := time.Now()
				err := fn(ctx, w)
				el := time.Since(t)
				if err != nil {
					if ctx.Err() != nil {
						break // interrupted, not failed
					}
					mine.errs++
					if len(mine.first) < keepErrors {
						mine.first = append(mine.first, err.Error())
					}
					continue
				}
				mine.h.add(el)
			}
			mu.Lock()
			total.add(&mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return &total
}
