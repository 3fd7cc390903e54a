package main

import (
	"context"
	"fmt"
	"strconv"
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
	if *asJSON {
		if list == nil {
			list = []ssf.State{}
		}
		return printJSON(c.stdout, list)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no streams (a receiver creates one at /ssf/streams with a token of scope ssf)")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tRECEIVER\tDELIVERY\tSTATUS\tSUBJECTS\tBACKLOG\tFAILED\tLAST ERROR")
	for _, s := range list {
		delivery := "poll"
		if s.Method == ssf.DeliveryPush {
			delivery = "push " + s.EndpointURL
		}
		subjects := "all"
		if s.Subjects > 0 || s.Removed > 0 {
			subjects = "all, +" + strconv.Itoa(s.Subjects) + " added, -" + strconv.Itoa(s.Removed) + " removed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.StreamID, s.ClientID, delivery, s.Status, subjects,
			s.Backlog, s.Failed, orDash(shorten(s.LastError, 60)))
	}
	return tw.Flush()
}
