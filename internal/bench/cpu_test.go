package bench

import (
	"testing"

	"github.com/idp/idp/internal/dbtest"
)

// TestPostgresCPU finds the test database's server and checks that work
// done by one of its backends shows in its CPU time. A server on another
// machine is not found, and the test says so.
func TestPostgresCPU(t *testing.T) {
	d := dbtest.New(t)
	findPostmaster(t.Context(), d.Pool)
	pid := int(postmasterPID.Load())
	t.Cleanup(func() { postmasterPID.Store(0) })
	if pid == 0 {
		t.Skip("the test database's server is not a process on this machine")
	}
	before, ok := postgresCPU(pid)
	if !ok {
		t.Fatalf("postgresCPU(%d): not readable", pid)
	}
	// A few hundred milliseconds of a backend's CPU, at least two ticks.
	if _, err := d.Pool.Exec(t.Context(), `SELECT count(*) FROM generate_series(1, 3000000) g WHERE md5(g::text) LIKE 'ab%'`); err != nil {
		t.Fatal(err)
	}
	after, ok := postgresCPU(pid)
	if !ok {
		t.Fatalf("postgresCPU(%d): not readable the second time", pid)
	}
	if after-before < 2*clockTick {
		t.Errorf("the server's CPU time grew by %v over a query that computes 3 million hashes, want at least %v", after-before, 2*clockTick)
	}
}
