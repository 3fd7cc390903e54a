package ssf

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/outbox"
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
	UpdatedAt   time.Time `json:"updated_at"`
	// Backlog counts the events waiting: undelivered, not failed, not
	// abandoned; Held those of them a pause keeps from every attempt.
	// Failed counts those the receiver refused or that could not be
	// delivered; LastError is the latest error of any.
	Backlog   int    `json:"backlog"`
	Held      int    `json:"held"`
	Failed    int    `json:"failed"`
	LastError string `json:"last_error,omitempty"`
}

// Overview lists every stream with its backlog, oldest stream first.
func Overview(ctx context.Context, q db.Querier) ([]State, error) {
	list, err := states(ctx, q, "")
	if err != nil {
		return nil, fmt.Errorf("ssf: overview: %w", err)
	}
	return list, nil
}

// StreamState is one stream with its backlog; ErrNotFound if there is none
// with that id.
func StreamState(ctx context.Context, q db.Querier, streamID string) (State, error) {
	if streamID == "" || !storable(streamID) {
		return State{}, ErrNotFound
	}
	list, err := states(ctx, q, streamID)
	if err != nil {
		return State{}, fmt.Errorf("ssf: stream %s: %w", streamID, err)
	}
	if len(list) == 0 {
		return State{}, ErrNotFound
	}
	return list[0], nil
}

// states reads the streams (one, or all when streamID is ""), then their
// events' counts from the outbox, which is the outbox's to count.
func states(ctx context.Context, q db.Querier, streamID string) ([]State, error) {
	rows, err := q.Query(ctx, `
		SELECT s.id, s.client_id, s.delivery_method, s.endpoint_url, s.status, s.status_reason, s.events_requested,
			(SELECT count(*) FROM ssf_stream_subjects x WHERE x.stream_id = s.id AND x.included)::int,
			(SELECT count(*) FROM ssf_stream_subjects x WHERE x.stream_id = s.id AND NOT x.included)::int,
			s.created_at, s.updated_at
		FROM ssf_streams s WHERE $1 = '' OR s.id = $1 ORDER BY s.created_at, s.id`, streamID)
	if err != nil {
		return nil, err
	}
	var list []State
	var st State
	_, err = pgx.ForEachRow(rows, []any{&st.StreamID, &st.ClientID, &st.Method, &st.EndpointURL, &st.Status, &st.Reason,
		&st.Events, &st.Subjects, &st.Removed, &st.CreatedAt, &st.UpdatedAt}, func() error {
		list = append(list, st)
		st.Events = nil // the next row's, not shared with this one
		return nil
	})
	if err != nil || len(list) == 0 {
		return list, err
	}
	f := outbox.Filter{Kinds: []string{KindPush, KindPoll}, Path: []string{"stream_id"}}
	if streamID != "" {
		f.ClientID, f.Values = list[0].ClientID, []string{streamID}
	}
	backlogs, err := outbox.Backlogs(ctx, q, f)
	if err != nil {
		return nil, err
	}
	for i := range list {
		b := backlogs[outbox.Group{ClientID: list[i].ClientID, Value: list[i].StreamID}]
		list[i].Backlog, list[i].Held, list[i].Failed, list[i].LastError = b.Pending, b.Held, b.Failed, b.LastError
	}
	return list, nil
}
