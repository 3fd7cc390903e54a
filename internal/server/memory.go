package server

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/idp/idp/internal/users"
)

// The provider's allocations are dominated by password hashes: argon2id
// allocates its whole memory (users.DefaultParams.Memory, 12 MiB) afresh for
// every sign-in, and a burst of sign-ins runs one per core. With Go's
// default collector (GOGC=100) the heap target is twice the small live
// heap, so it collects after every few hashes and returns the freed blocks
// to the kernel, and the next hash faults them back in page by page:
// measured on two cores, the kernel's share of the process's CPU rose from
// 2-6% to 28-64% during sign-ins (docs/performance.md).
//
// So the collector runs on a memory budget instead: a soft limit sized for
// the hashes a machine this size runs at once, and a high GOGC so that the
// limit, not heap growth, decides when to collect. Memory up to the limit
// stays mapped, hashes reuse it, and sign-ins cost about a tenth less CPU;
// resident memory stays near the limit plus the runtime's own ~20 MB.
const tunedGCPercent = 400

// DefaultMemoryLimit is the soft limit used when the operator sets none:
// 64 MiB for everything but hashing (twice the heap the provider uses
// under load between sign-ins) and one hash's memory per core, as many as
// users.Hash runs at once. It was one and a half hashes per core (100 MiB
// on two cores) until RS256 moved to libcrypto, which with its library
// and the larger binary brought the benchmark's peak resident memory to
// 148-149 MB of its 150; at 88 MiB the peak is 135 MB and sign-ins cost
// the same (docs/performance.md).
func DefaultMemoryLimit() int64 {
	hash := int64(users.DefaultParams.Memory) << 10
	return 64<<20 + int64(runtime.NumCPU())*hash
}

// TuneMemory sets the soft memory limit and the collector's percentage as
// above, unless the environment sets GOGC or GOMEMLIMIT: then the operator
// has tuned the runtime and it is left alone. A limit of 0 leaves the
// runtime's defaults. It returns whether it changed anything.
//
// The limit is soft: a provider whose live heap approaches it (many
// thousands of concurrent requests on a small limit) collects more often,
// using up to half the CPU, rather than failing; set a larger limit, or
// GOMEMLIMIT and GOGC, for such a deployment.
func TuneMemory(limit int64, getenv func(string) string) bool {
	if limit <= 0 || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(tunedGCPercent)
	return true
}

// ParseMemoryLimit reads a memory limit: "auto" (DefaultMemoryLimit), "off"
// (0: the runtime's defaults), or a size in bytes with an optional unit,
// KiB, MiB or GiB ("512MiB"), as GOMEMLIMIT is written.
func ParseMemoryLimit(s string) (int64, error) {
	switch s {
	case "auto":
		return DefaultMemoryLimit(), nil
	case "off":
		return 0, nil
	}
	num, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, unit = strings.TrimSuffix(s, u.suffix), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("memory limit must be auto, off or a size like 512MiB, not %q", s)
	}
	return n * unit, nil
}
