package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/idp/idp/internal/ssf"
)

// signalsStreamsListCommand lists the Shared Signals streams receivers
// created, with what waits in each and the latest error.
func signalsStreamsListCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals streams list", "[--json]")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	list, err := ssf.Overview(ctx, pool)
	if err != nil {
		return err
	}
	return printList(c.stdout, *asJSON, list, "no streams (a receiver creates one at /ssf/streams with a token of scope ssf)",
		"STREAM\tRECEIVER\tDELIVERY\tSTATUS\tSUBJECTS\tBACKLOG\tFAILED\tLAST ERROR", func(s ssf.State) []string {
			delivery := "poll"
			if s.Method == ssf.DeliveryPush {
				delivery = "push " + s.EndpointURL
			}
			subjects := "all"
			if s.Subjects > 0 || s.Removed > 0 {
				subjects = "all, +" + strconv.Itoa(s.Subjects) + " added, -" + strconv.Itoa(s.Removed) + " removed"
			}
			return []string{s.StreamID, s.ClientID, delivery, s.Status, subjects, strconv.Itoa(s.Backlog), strconv.Itoa(s.Failed), orDash(shorten(s.LastError, 60))}
		})
}

// signalsStreamsShowCommand shows one stream: its configuration, status
// and how its events stand.
func signalsStreamsShowCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals streams show", "ID [--json]")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	// The ID comes first (show ID [flags]); flags may follow it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(fs, args); err != nil {
			return err
		}
		return usagef("signals streams show: name one stream ID (see 'idp signals streams list')")
	}
	id := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, err := ssf.StreamState(ctx, pool, id)
	if errors.Is(err, ssf.ErrNotFound) {
		return fmt.Errorf("signals streams show: no stream %q (see 'idp signals streams list')", id)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, s)
	}
	delivery := "poll (RFC 8936)"
	if s.Method == ssf.DeliveryPush {
		delivery = "push (RFC 8935) to " + s.EndpointURL
	}
	status := s.Status
	if s.Reason != "" {
		status += " (" + s.Reason + ")"
	}
	waiting := strconv.Itoa(s.Backlog)
	if s.Held > 0 {
		waiting += " (" + strconv.Itoa(s.Held) + " held until the stream is enabled)"
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, row := range [][2]string{
		{"stream", s.StreamID},
		{"receiver", s.ClientID},
		{"delivery", delivery},
		{"status", status},
		{"events", strings.Join(s.Events, ", ")},
		{"subjects", "all, +" + strconv.Itoa(s.Subjects) + " added, -" + strconv.Itoa(s.Removed) + " removed"},
		{"created", s.CreatedAt.UTC().Format("2006-01-02 15:04:05 UTC")},
		{"updated", s.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC")},
		{"waiting", waiting},
		{"failed", strconv.Itoa(s.Failed)},
		{"last error", orDash(s.LastError)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}
