package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
)

// Health serves the probes: Live (the process answers; no database) for a
// liveness check that must not restart instances during a database outage,
// and Ready (the database answers within Timeout, takes writes and has no pending
// migration) for taking an instance out of a load balancer.
type Health struct {
	Pool *pgxpool.Pool
	// Timeout bounds the readiness check (default 2 s).
	Timeout time.Duration
}

// healthBody is the small JSON answer of both probes.
type healthBody struct {
	Status   string `json:"status"` // "ok" or "unavailable"
	Database string `json:"database,omitempty"`
	// Migrations is "ok" or "N pending".
	Migrations string `json:"migrations,omitempty"`
}

// Live answers 200 while the process serves HTTP.
func (h *Health) Live(w http.ResponseWriter, r *http.Request) {
	writeHealth(w, http.StatusOK, healthBody{Status: "ok"})
}

// Ready answers 200 when the database is reachable, writable and fully
// migrated, else 503. Errors are summarised, not quoted: they may name hosts.
func (h *Health) Ready(w http.ResponseWriter, r *http.Request) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	body := healthBody{Status: "unavailable", Database: "unreachable"}
	if err := db.CheckWritable(ctx, h.Pool); err != nil {
		if errors.Is(err, db.ErrReadOnly) {
			body.Database = "read-only"
		}
		writeHealth(w, http.StatusServiceUnavailable, body)
		return
	}
	body.Database = "ok"
	pending, err := db.Pending(ctx, h.Pool)
	switch {
	case err != nil:
		body.Migrations = "unknown"
	case len(pending) > 0:
		body.Migrations = fmt.Sprintf("%d pending", len(pending))
	default:
		body.Status, body.Migrations = "ok", "ok"
		writeHealth(w, http.StatusOK, body)
		return
	}
	writeHealth(w, http.StatusServiceUnavailable, body)
}

func writeHealth(w http.ResponseWriter, status int, body healthBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body) //nolint:errcheck
}
