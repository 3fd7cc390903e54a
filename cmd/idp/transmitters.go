package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/ssf/receiver"
)

// signalsTransmittersAddCommand registers a transmitter this provider
// trusts: what it may say, about whom, and how its SETs arrive.
func signalsTransmittersAddCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals transmitters add", "--issuer URL --subjects email|iss_sub (--push | --poll-url URL (--poll-token T | --client-id ID --client-secret S --token-url URL))")
	var n receiver.New
	var events, subjects string
	fs.StringVar(&n.Issuer, "issuer", "", "the transmitter's issuer `URL` (the iss of its SETs)")
	fs.StringVar(&n.ConfigURL, "config-url", "", "its SSF configuration `URL` (default: issuer + /.well-known/ssf-configuration)")
	fs.StringVar(&n.Audience, "audience", "", "an aud its SETs may carry besides this provider's issuer: the `name` it knows us by (e.g. our client id there)")
	fs.StringVar(&events, "events", "", "comma-separated `events` it may send, acted on: session-revoked, credential-change, "+
		"account-disabled, device-compliance-change (default: all of them)")
	fs.StringVar(&subjects, "subjects", "", "how its subjects name our users, comma-separated: email (the account's email), "+
		"iss_sub (iss this provider's issuer, sub the user id)")
	push := fs.Bool("push", false, "it pushes SETs (RFC 8935) to /ssf/receive/<id>; prints the Authorization header to give it, once")
	fs.StringVar(&n.PollURL, "poll-url", "", "we poll it (RFC 8936) at this `URL` (its stream's endpoint_url)")
	fs.StringVar(&n.PollToken, "poll-token", "", "the bearer `token` it gave us for polling; - reads it from standard input")
	fs.StringVar(&n.ClientID, "client-id", "", "or poll with tokens of the client-credentials grant: our client `id` there")
	fs.StringVar(&n.ClientSecret, "client-secret", "", "its client `secret`; - reads it from standard input")
	fs.StringVar(&n.TokenURL, "token-url", "", "its token endpoint `URL`")
	fs.StringVar(&n.TokenScope, "token-scope", "", "the `scopes` to ask for, space-separated (e.g. ssf)")
	set := newSettings(fs, c.getenv)
	allowPrivate := set.Bool("allow-private-backchannel", "IDP_ALLOW_PRIVATE_BACKCHANNEL", false,
		"let its URLs be on this host or a private network: for demos and tests")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "issuer", "subjects"); err != nil {
		return err
	}
	if err := set.err(); err != nil {
		return fmt.Errorf("signals transmitters add: %w", err)
	}
	poll := n.PollURL != "" || n.PollToken != "" || n.ClientID != ""
	if *push == poll {
		return usagef("signals transmitters add: choose how SETs arrive: --push, or --poll-url with --poll-token or --client-id")
	}
	if poll && (n.PollURL == "" || (n.PollToken == "") == (n.ClientID == "")) {
		return usagef("signals transmitters add: polling needs --poll-url and either --poll-token or --client-id (with --client-secret and --token-url)")
	}
	for _, v := range []*string{&n.PollToken, &n.ClientSecret} {
		if *v == "-" {
			b, err := io.ReadAll(io.LimitReader(c.stdin, 8<<10))
			if err != nil {
				return err
			}
			*v = strings.TrimSpace(string(b))
		}
	}
	if events != "" {
		n.Events = strings.Split(events, ",")
	}
	n.Subjects = strings.Split(subjects, ",")
	store := &receiver.Store{AllowPrivate: *allowPrivate}
	if !*push {
		secret := c.getenv("IDP_SECRET")
		if secret == "" {
			return usagef("signals transmitters add: IDP_SECRET is required to poll: the same server secret as the running instances, " +
				"which seals the poll token")
		}
		box, err := secrets.New(secret, receiver.SecretPurpose)
		if err != nil {
			return usageError{err}
		}
		store.Box = box
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store.Pool = pool
	t, header, err := store.Add(ctx, n)
	if errors.Is(err, receiver.ErrInvalid) || errors.Is(err, receiver.ErrExists) {
		return fmt.Errorf("signals transmitters add: %w", err)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]any{"transmitter": t, "receive_path": receiver.PathReceive + t.ID}
		if header != "" {
			out["authorization_header"] = header
		}
		return printJSON(c.stdout, out)
	}
	fmt.Fprintf(c.stdout, "transmitter %s added: %s\n", t.ID, t.Issuer)
	if header != "" {
		fmt.Fprintf(c.stdout, "create a push stream there with endpoint_url <this issuer>%s%s and authorization_header:\n  %s\n"+
			"(shown once: only its hash is kept)\n", receiver.PathReceive, t.ID, header)
	}
	return nil
}

// signalsTransmittersListCommand lists the trusted transmitters.
func signalsTransmittersListCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals transmitters list", "[--json]")
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
	list, err := (&receiver.Store{Pool: pool}).List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []receiver.Transmitter{}
		}
		return printJSON(c.stdout, list)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no transmitters (idp signals transmitters add registers one)")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tISSUER\tDELIVERY\tSUBJECTS\tEVENTS\tLAST POLL\tLAST ERROR")
	for _, t := range list {
		var names []string
		for _, e := range t.Events {
			names = append(names, e[strings.LastIndex(e, "/")+1:])
		}
		last := "-"
		if !t.LastPoll.IsZero() {
			last = t.LastPoll.UTC().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Issuer, t.Delivery, strings.Join(t.Subjects, ","),
			strings.Join(names, ","), last, orDash(shorten(t.LastError, 60)))
	}
	return tw.Flush()
}

// signalsTransmittersRemoveCommand forgets a transmitter.
func signalsTransmittersRemoveCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals transmitters remove", "ID")
	dbURL := c.databaseFlag(fs)
	// The ID comes first (remove ID [flags]); flags may follow it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(fs, args); err != nil {
			return err
		}
		return usagef("signals transmitters remove: name one transmitter ID (see 'idp signals transmitters list')")
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
	if err := (&receiver.Store{Pool: pool}).Remove(ctx, id); errors.Is(err, receiver.ErrNotFound) {
		return fmt.Errorf("signals transmitters remove: no transmitter %q", id)
	} else if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "transmitter %s removed\n", id)
	return err
}
