package ssf

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/db"
)

// About names one event's user: the person and, for session-revoked, the
// session that ended.
type About struct {
	UserID string
	SID    string
}

// target is one stream an event about one user goes to, with the sub_id
// it carries there.
type target struct {
	UserID   string
	StreamID string
	ClientID string
	Method   string
	Subject  Subject
}

// targets finds, for each of users, the streams that want event about
// that user: not disabled, event among those requested, the user among
// the stream's subjects (every user unless the stream removed them, or,
// for a stream whose default is NONE, only those added). The sub_id is
// the subject the receiver added when it named the user, otherwise the
// user's iss_sub. It reads in the transaction in ctx, so it sees the
// change being made.
func targets(ctx context.Context, q db.Querier, issuer, event string, users []string) ([]target, error) {
	if len(users) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `
		WITH a AS (
			SELECT ord::int - 1 AS i, a.user_id, ARRAY['email:' || lower(u.email), 'iss_sub:' || $1 || ' ' || u.id::text] AS keys
			FROM unnest($2::uuid[]) WITH ORDINALITY AS a(user_id, ord)
			JOIN users u ON u.id = a.user_id
		)
		SELECT a.i, s.id, s.client_id, s.delivery_method,
			(SELECT x.subject FROM ssf_stream_subjects x
			 WHERE x.stream_id = s.id AND x.subject_key = ANY(a.keys) AND x.included
			 ORDER BY x.created_at LIMIT 1)
		FROM a CROSS JOIN ssf_streams s
		WHERE s.status <> 'disabled' AND $3 = ANY(s.events_requested)
		  AND NOT EXISTS (SELECT 1 FROM ssf_stream_subjects x
			WHERE x.stream_id = s.id AND x.subject_key = ANY(a.keys) AND NOT x.included)
		  AND (s.default_subjects = 'ALL' OR EXISTS (SELECT 1 FROM ssf_stream_subjects x
			WHERE x.stream_id = s.id AND x.subject_key = ANY(a.keys) AND x.included))
		ORDER BY a.i, s.id`, issuer, users, event)
	if err != nil {
		return nil, fmt.Errorf("ssf: find streams: %w", err)
	}
	var out []target
	var i int
	var t target
	var subject []byte
	_, err = pgx.ForEachRow(rows, []any{&i, &t.StreamID, &t.ClientID, &t.Method, &subject}, func() error {
		t.UserID = users[i]
		t.Subject = IssSub(issuer, users[i])
		if subject != nil {
			t.Subject = Subject{}
			if err := json.Unmarshal(subject, &t.Subject); err != nil {
				return err
			}
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ssf: find streams: %w", err)
	}
	return out, nil
}
