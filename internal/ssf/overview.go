package ssf

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

// State is a stream as an operator sees it: its configuration, and how its
// events stand in the outbox.
type State struct {
	StreamID    string    `json:"stream_id"`
	ClientID    string    `json:"client_id"`
	Method      string    `json:"delivery_method"`
	EndpointURL string    `json:"endpoint_url,omitempty"`
	Status      string    `json:"status"`
	Reason      string    `json:"status_reason,omitempty"`
	Events      []string  `json:"events_requested"`
	Subjects    int       `json:"subjects_added"`
	Removed     int       `json:"subjects_removed"`
	CreatedAt   time.Time `json:"created_at"`
	// Backlog counts the events waiting: undelivered, not failed, not
	// abandoned. Failed counts those the receiver refused or that could
	// not be delivered; LastError is the latest such error.
	Backlog   int    `json:"backlog"`
	Failed    int    `json:"failed"`
	LastError string `json:"last_error,omitempty"`
}

// Overview lists every stream with its backlog, oldest stream first.
func Overview(ctx context.Context, q db.Querier) ([]State, error) {
	rows, err := q.Query(ctx, `
		SELECT s.id, s.client_id, s.delivery_method, s.endpoint_url, s.status, s.status_reason, s.events_requested,
			(SELECT count(*) FROM ssf_stream_subjects x WHERE x.stream_id = s.id AND x.included)::int,
			(SELECT count(*) FROM ssf_stream_subjects x WHERE x.stream_id = s.id AND NOT x.included)::int,
			s.created_at,
			(SELECT count(*) FROM outbox o WHERE o.kind IN ($1, $2) AND o.client_id = s.client_id
				AND o.payload->>'stream_id' = s.id
				AND o.delivered_at IS NULL AND o.failed_at IS NULL AND o.abandoned_at IS NULL)::int,
			(SELECT count(*) FROM outbox o WHERE o.kind IN ($1, $2) AND o.client_id = s.client_id
				AND o.payload->>'stream_id' = s.id AND o.delivered_at IS NULL
				AND (o.failed_at IS NOT NULL OR o.abandoned_at IS NOT NULL))::int,
			COALESCE((SELECT o.last_error FROM outbox o WHERE o.kind IN ($1, $2) AND o.client_id = s.client_id
				AND o.payload->>'stream_id' = s.id AND o.last_error <> ''
				ORDER BY o.id DESC LIMIT 1), '')
		FROM ssf_streams s ORDER BY s.created_at, s.id`, KindPush, KindPoll)
	if err != nil {
		return nil, fmt.Errorf("ssf: overview: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[State])
	if err != nil {
		return nil, fmt.Errorf("ssf: overview: %w", err)
	}
	return list, nil
}
