package audit_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/dbtest"
)

// TestList: a user's entries are those about them and those they made, as
// themselves or as an administrator, each once even when it is both, newest
// first; paging by id walks them without gaps or repeats.
func TestList(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	const ann, ben = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, e := range []struct{ actor, action, target string }{
		{audit.Admin(ann), "users.disable", ben},     // by ann, about ben
		{audit.Admin(ann), "users.require_mfa", ann}, // by ann, about ann: once, not twice
		{audit.User(ben), audit.ActionChangePassword, ben},
		{audit.System, "sessions.revoke", ann},
		{audit.CLI, "clients.create", "client:wiki"},
	} {
		err := db.Tx(ctx, d.Pool, func(ctx context.Context) error {
			return audit.Record(ctx, at, e.actor, e.action, e.target, map[string]string{"k": "v"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	actions := func(q audit.Query) []string {
		t.Helper()
		es, err := audit.List(ctx, d.Pool, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			var details map[string]string
			if err := json.Unmarshal(e.Details, &details); err != nil || details["k"] != "v" || !e.At.Equal(at) {
				t.Errorf("entry %+v: details or time not as recorded", e)
			}
			out = append(out, e.Action)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    audit.Query
		want []string
	}{
		{"everything", audit.Query{}, []string{"clients.create", "sessions.revoke", audit.ActionChangePassword, "users.require_mfa", "users.disable"}},
		{"ann", audit.Query{UserID: ann}, []string{"sessions.revoke", "users.require_mfa", "users.disable"}},
		{"ben", audit.Query{UserID: ben}, []string{audit.ActionChangePassword, "users.disable"}},
		{"ann, two at most", audit.Query{UserID: ann, Limit: 2}, []string{"sessions.revoke", "users.require_mfa"}},
		{"about ann only", audit.Query{UserID: ann, AboutOnly: true}, []string{"sessions.revoke", "users.require_mfa"}},
		{"about ben only", audit.Query{UserID: ben, AboutOnly: true}, []string{audit.ActionChangePassword, "users.disable"}},
		{"nobody", audit.Query{UserID: "33333333-3333-3333-3333-333333333333"}, nil},
	} {
		if got := actions(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// Pages of one walk ann's entries in order.
	var walked []string
	for before := int64(0); ; {
		es, err := audit.List(ctx, d.Pool, audit.Query{UserID: ann, Limit: 1, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		walked = append(walked, es[0].Action)
		before = es[0].ID
	}
	if want := []string{"sessions.revoke", "users.require_mfa", "users.disable"}; !slices.Equal(walked, want) {
		t.Errorf("paged: %v, want %v", walked, want)
	}
}
