package bench

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// Memory is the process's resident set size during the run, from
// /proc/self/status: the largest VmRSS sampled, and the kernel's own
// high-water mark (VmHWM), which catches peaks between samples.
type Memory struct {
	Samples  int               `json:"samples"`
	MaxRSS   uint64            `json:"max_rss_bytes"`
	HWM      uint64            `json:"hwm_bytes"`
	PerPhase map[string]uint64 `json:"max_rss_bytes_per_phase"`
	// Supported is false where /proc/self/status is missing (not Linux).
	Supported bool `json:"supported"`
}

// rssSampler reads VmRSS every interval until stopped, filing each sample
// under the current phase.
type rssSampler struct {
	mu    sync.Mutex
	phase string
	mem   Memory
	stop  chan struct{}
	done  chan struct{}
}

func startRSS(interval time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{}),
		mem: Memory{PerPhase: map[string]uint64{}}}
	_, _, err := readStatus()
	s.mem.Supported = err == nil
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.sample()
}

func (s *rssSampler) sample() {
	rss, _, err := readStatus()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.Samples++
	s.mem.MaxRSS = max(s.mem.MaxRSS, rss)
	if s.phase != "" && rss > s.mem.PerPhase[s.phase] {
		s.mem.PerPhase[s.phase] = rss
	}
}

// phaseMax is the largest VmRSS sampled so far in phase p.
func (s *rssSampler) phaseMax(p string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem.PerPhase[p]
}

// finish stops sampling and returns what was seen.
func (s *rssSampler) finish() Memory {
	close(s.stop)
	<-s.done
	s.sample()
	_, hwm, _ := readStatus()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.HWM = hwm
	return s.mem
}

// readStatus returns VmRSS and VmHWM in bytes.
func readStatus() (rss, hwm uint64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			rss = kB(line[len("VmRSS:"):])
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			hwm = kB(line[len("VmHWM:"):])
		}
	}
	return rss, hwm, nil
}

func kB(field []byte) uint64 {
	f := bytes.Fields(field)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(string(f[0]), 10, 64)
	return n * 1024
}
