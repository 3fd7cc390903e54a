package ops

import (
	"strings"
	"testing"
)

// The middleware and the database gauges are tested end to end, against a
// real instance and PostgreSQL, in internal/server (ops_test.go). These are
// the pure decisions underneath.

func TestSaneRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"req-abc.123":                          true,
		"0f8fad5b-d9cb-469f-a165-70867728950e": true,
		"trace:span_1":                         true,
		"":                                     false,
		strings.Repeat("a", 64):                true,
		strings.Repeat("a", 65):                false,
		"with space":                           false,
		"quote\"d":                             false,
		"new\nline":                            false,
		"ünïcode":                              false,
	} {
		if got := saneRequestID(id); got != want {
			t.Errorf("saneRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}
