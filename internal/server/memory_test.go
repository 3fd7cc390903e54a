package server_test

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/idp/idp/internal/server"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"auto":      server.DefaultMemoryLimit(),
		"off":       0,
		"536870912": 512 << 20,
		"512MiB":    512 << 20,
		"2GiB":      2 << 30,
		"64KiB":     64 << 10,
		"1000B":     1000,
	} {
		if got, err := server.ParseMemoryLimit(in); err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "12MB", "MiB", "1.5GiB", "9999999999GiB", "lots"} {
		if got, err := server.ParseMemoryLimit(in); err == nil {
			t.Errorf("ParseMemoryLimit(%q) = %d, want an error", in, got)
		}
	}
	if auto := server.DefaultMemoryLimit(); auto < 64<<20+12<<20 {
		t.Errorf("DefaultMemoryLimit() = %d MiB, want room for at least one password hash beyond 64 MiB", auto>>20)
	}
}

func TestTuneMemory(t *testing.T) {
	t.Cleanup(func() {
		debug.SetMemoryLimit(math.MaxInt64)
		debug.SetGCPercent(100)
	})
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	const limit = 200 << 20
	for _, operatorSet := range []map[string]string{{"GOGC": "100"}, {"GOMEMLIMIT": "1GiB"}} {
		if server.TuneMemory(limit, env(operatorSet)) {
			t.Errorf("TuneMemory with %v in the environment changed the runtime; the operator's settings win", operatorSet)
		}
	}
	if server.TuneMemory(0, env(nil)) {
		t.Error("TuneMemory(0) changed the runtime; off means the runtime's defaults")
	}
	if debug.SetMemoryLimit(-1) == limit {
		t.Fatal("memory limit set although TuneMemory reported no change")
	}
	if !server.TuneMemory(limit, env(nil)) {
		t.Fatal("TuneMemory without GOGC or GOMEMLIMIT did nothing")
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("memory limit = %d, want %d", got, limit)
	}
	if got := debug.SetGCPercent(100); got <= 100 {
		t.Errorf("GC percent = %d, want above the default so that the limit decides", got)
	}
}
