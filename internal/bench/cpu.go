package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// cpuReading is a moment's cumulative CPU time: this process's (provider
// and load generator alike) and the whole machine's busy time (every
// process, PostgreSQL's included, and the kernel's interrupt work). Their
// differences over a measurement, divided by its operations, say what one
// operation costs in CPU, which the ratios to the floors do not show.
type cpuReading struct {
	process  time.Duration
	postgres time.Duration // the database server's processes, when found (postmasterPID)
	busy     time.Duration
	ok       bool // false where /proc/stat cannot be read (not Linux)
	pgOK     bool
}

func readCPU() cpuReading {
	var c cpuReading
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c.busy, c.ok = machineBusy()
	if pid := postmasterPID.Load(); pid > 0 {
		c.postgres, c.pgOK = postgresCPU(int(pid))
	}
	return c
}

// postmasterPID is the process id of the PostgreSQL server the benchmark
// runs on, when it runs on this machine and /proc shows it (0 otherwise):
// its CPU per operation then has a column of its own, which the machine's
// busy time, shared with whatever else runs, does not give.
var postmasterPID atomic.Int64

// findPostmaster looks for the server behind pool: the parent of a backend
// whose process id the server reports, if /proc has it and names it
// postgres. A server elsewhere (another host, a container) is not found.
func findPostmaster(ctx context.Context, pool *pgxpool.Pool) {
	var backend int
	if pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend) != nil {
		return
	}
	st, ok := procStat(backend)
	if !ok || len(st) < 2 {
		return
	}
	ppid, err := strconv.Atoi(st[1])
	if err != nil {
		return
	}
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/comm"); err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return
	}
	postmasterPID.Store(int64(ppid))
}

// postgresCPU is the CPU time of the PostgreSQL server whose postmaster is
// pid: its own and that of its reaped children (backends that ended) and
// of its live ones. A backend that ends between two readings moves from
// the second sum to the first, so differences stay right.
func postgresCPU(pid int) (time.Duration, bool) {
	st, ok := procStat(pid)
	if !ok {
		return 0, false
	}
	ticks := statTicks(st, 4) // utime, stime, cutime, cstime
	children, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return 0, false
	}
	for _, c := range strings.Fields(string(children)) {
		n, err := strconv.Atoi(c)
		if err != nil {
			continue
		}
		if cst, ok := procStat(n); ok {
			ticks += statTicks(cst, 2) // utime, stime
		}
	}
	return time.Duration(ticks) * clockTick, true
}

// procStat is /proc/pid/stat's fields after the command name (which may
// hold spaces): state, ppid, … (field 3 onwards in proc(5)'s numbering).
func procStat(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

// statTicks sums n of the time fields that start at utime (field 14).
func statTicks(st []string, n int) int64 {
	var ticks int64
	for i := 11; i < 11+n && i < len(st); i++ {
		v, _ := strconv.ParseInt(st[i], 10, 64)
		ticks += v
	}
	return ticks
}

// clockTick is USER_HZ, the unit of /proc/stat, which Linux fixes at 100
// on every architecture it exports it to user space for.
const clockTick = 10 * time.Millisecond

// machineBusy reads the time all CPUs spent on anything but idling,
// waiting for I/O or being stolen by the hypervisor.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user.
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, true
}

// cpuSpent is CPU time spent during measurements.
type cpuSpent struct {
	process, postgres, busy time.Duration
	unknown                 bool // a reading failed: busy means nothing
	pgUnknown               bool // postgres means nothing
}

func (c *cpuSpent) add(o cpuSpent) {
	c.process += o.process
	c.postgres += o.postgres
	c.busy += o.busy
	c.unknown = c.unknown || o.unknown
	c.pgUnknown = c.pgUnknown || o.pgUnknown
}

// cpuSince is what was spent since start.
func cpuSince(start cpuReading) cpuSpent {
	end := readCPU()
	return cpuSpent{process: end.process - start.process, postgres: end.postgres - start.postgres,
		busy: end.busy - start.busy, unknown: !start.ok || !end.ok, pgUnknown: !start.pgOK || !end.pgOK}
}
