package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuReading is a moment's cumulative CPU time: this process's (provider
// and load generator alike) and the whole machine's busy time (every
// process, PostgreSQL's included, and the kernel's interrupt work). Their
// differences over a measurement, divided by its operations, say what one
// operation costs in CPU, which the ratios to the floors do not show.
type cpuReading struct {
	process time.Duration
	busy    time.Duration
	ok      bool // false where /proc/stat cannot be read (not Linux)
}

func readCPU() cpuReading {
	var c cpuReading
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c.busy, c.ok = machineBusy()
	return c
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
	process, busy time.Duration
	unknown       bool // a reading failed: busy means nothing
}

func (c *cpuSpent) add(o cpuSpent) {
	c.process += o.process
	c.busy += o.busy
	c.unknown = c.unknown || o.unknown
}

// cpuSince is what was spent since start.
func cpuSince(start cpuReading) cpuSpent {
	end := readCPU()
	return cpuSpent{process: end.process - start.process, busy: end.busy - start.busy, unknown: !start.ok || !end.ok}
}
