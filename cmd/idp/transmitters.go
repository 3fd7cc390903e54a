package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/ssf/receiver"
)

// signalsTransmittersAddCommand registers a transmitter this provider
// trusts: what it may say, about whom, and how its SETs arrive. Given a
// credential for the transmitter's API, it creates the stream there
// itself and asks for a verification event; here, not in the servers, so
// one process creates it and its errors reach the operator.
func signalsTransmittersAddCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("signals transmitters add", "--issuer URL --subjects email|iss_sub (--push | --poll | --poll-url URL) "+
		"[--token T | --client-id ID --client-secret S --token-url URL]")
	var n receiver.New
	var events, subjects string
	fs.StringVar(&n.Issuer, "issuer", "", "the transmitter's issuer `URL` (the iss of its SETs)")
	fs.StringVar(&n.ConfigURL, "config-url", "", "its SSF configuration `URL` (default: issuer + /.well-known/ssf-configuration)")
	fs.StringVar(&n.Audience, "audience", "", "an aud its SETs may carry besides this provider's issuer: the `name` it knows us by "+
		"(default for a stream we create: the aud the transmitter gives it)")
	fs.StringVar(&events, "events", "", "comma-separated `events` it may send, acted on: session-revoked, credential-change, "+
		"account-disabled, device-compliance-change (default: all of them)")
	fs.StringVar(&subjects, "subjects", "", "how its subjects name our users, comma-separated: email (the account's email), "+
		"iss_sub (iss this provider's issuer, sub the user id)")
	push := fs.Bool("push", false, "it pushes SETs (RFC 8935) to <IDP_ISSUER>/ssf/receive/<id>; with a credential we create the stream, "+
		"without one this prints the Authorization header to give it, once")
	poll := fs.Bool("poll", false, "we poll it (RFC 8936): with a credential, we create the stream and poll where it says")
	fs.StringVar(&n.PollURL, "poll-url", "", "we poll the stream made there by hand at this `URL` (its endpoint_url)")
	fs.StringVar(&n.Token, "token", "", "a bearer `token` for its API (stream management, polling); - reads it from standard input")
	fs.StringVar(&n.Token, "poll-token", "", "the former name of --token")
	fs.StringVar(&n.ClientID, "client-id", "", "or get tokens for its API with the client-credentials grant: our client `id` there")
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
	credential := n.Token != "" || n.ClientID != ""
	switch {
	case *push == (*poll || n.PollURL != ""):
		return usagef("signals transmitters add: choose how SETs arrive: --push, --poll, or --poll-url")
	case n.Token != "" && n.ClientID != "":
		return usagef("signals transmitters add: either --token or --client-id (with --client-secret and --token-url), not both")
	case !*push && !credential:
		return usagef("signals transmitters add: polling needs --token or --client-id (with --client-secret and --token-url)")
	case *poll && n.PollURL != "":
		return usagef("signals transmitters add: --poll creates the stream and polls where the transmitter says; " +
			"--poll-url polls a stream made there by hand: one of them")
	}
	if credential && n.PollURL == "" {
		n.CreateStream = receiver.DeliveryPoll
		if *push {
			n.CreateStream = receiver.DeliveryPush
		}
	}
	for _, v := range []*string{&n.Token, &n.ClientSecret} {
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
	if credential {
		box, err := c.transmitterBox("signals transmitters add", "seals the credential for the transmitter")
		if err != nil {
			return err
		}
		store.Box = box
	}
	// Our issuer names our push endpoint, and is in the description of a
	// stream we create.
	store.Issuer = c.getenv("IDP_ISSUER")
	if n.CreateStream == receiver.DeliveryPush && store.Issuer == "" {
		return usagef("signals transmitters add: IDP_ISSUER is required to create a push stream: it names our push endpoint")
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store.Pool = pool
	t, header, err := store.Add(ctx, n)
	if errors.Is(err, receiver.ErrInvalid) || errors.Is(err, receiver.ErrExists) || errors.Is(err, receiver.ErrTransmitter) {
		return fmt.Errorf("signals transmitters add: %w", err)
	}
	if err != nil {
		return err
	}
	var verifyErr error
	if t.StreamID != "" {
		if verifyErr = store.RequestVerification(ctx, t.ID); verifyErr != nil {
			fmt.Fprintf(c.stderr, "note: the verification request failed (%v); 'idp signals transmitters verify %s' asks again\n", verifyErr, t.ID)
		}
	}
	if *asJSON {
		out := map[string]any{"transmitter": t, "receive_path": receiver.PathReceive + t.ID}
		if header != "" {
			out["authorization_header"] = header
		}
		if t.StreamID != "" {
			out["verification_requested"] = verifyErr == nil
		}
		return printJSON(c.stdout, out)
	}
	fmt.Fprintf(c.stdout, "transmitter %s added: %s\n", t.ID, t.Issuer)
	switch {
	case t.StreamID != "" && t.Delivery == receiver.DeliveryPush:
		fmt.Fprintf(c.stdout, "stream %s created there, pushing to %s%s%s\n", t.StreamID, strings.TrimSuffix(store.Issuer, "/"), receiver.PathReceive, t.ID)
	case t.StreamID != "":
		fmt.Fprintf(c.stdout, "stream %s created there, polled at %s\n", t.StreamID, t.PollURL)
	case header != "":
		fmt.Fprintf(c.stdout, "create a push stream there with endpoint_url <this issuer>%s%s and authorization_header:\n  %s\n"+
			"(shown once: only its hash is kept)\n", receiver.PathReceive, t.ID, header)
	}
	if t.StreamID != "" && verifyErr == nil {
		fmt.Fprintln(c.stdout, "verification requested: 'idp signals transmitters list' shows when its event arrives")
	}
	return nil
}

// transmitterBox is the box of the transmitters' credentials, from
// IDP_SECRET: the running instances' secret, or they could not open them.
func (c *cli) transmitterBox(cmd, why string) (*secrets.Box, error) {
	secret := c.getenv("IDP_SECRET")
	if secret == "" {
		return nil, usagef("%s: IDP_SECRET is required: the same server secret as the running instances, which %s", cmd, why)
	}
	box, err := secrets.New(secret, receiver.SecretPurpose)
	if err != nil {
		return nil, usageError{err}
	}
	return box, nil
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
	return printList(c.stdout, *asJSON, list, "no transmitters (idp signals transmitters add registers one)",
		"ID\tISSUER\tDELIVERY\tSTREAM\tVERIFIED\tSTREAM STATUS\tSUBJECTS\tEVENTS\tLAST POLL\tLAST ERROR", func(t receiver.Transmitter) []string {
			var names []string
			for _, e := range t.Events {
				names = append(names, e[strings.LastIndex(e, "/")+1:])
			}
			return []string{t.ID, t.Issuer, t.Delivery, orDash(t.StreamID), verification(t), streamStatus(t),
				strings.Join(t.Subjects, ","), strings.Join(names, ","), when(t.LastPoll), orDash(shorten(t.LastError, 60))}
		})
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// verification says when the transmitter last answered our verification
// request, or that one is awaited.
func verification(t receiver.Transmitter) string {
	switch {
	case !t.VerifyRequested.IsZero() && t.VerifyRequested.After(t.VerifiedAt):
		if t.VerifiedAt.IsZero() {
			return "pending"
		}
		return when(t.VerifiedAt) + " (again pending)"
	default:
		return when(t.VerifiedAt)
	}
}

// streamStatus is what the transmitter's last stream-updated said.
func streamStatus(t receiver.Transmitter) string {
	if t.StreamStatus == "" {
		return "-"
	}
	if t.StreamReason != "" {
		return t.StreamStatus + ": " + shorten(t.StreamReason, 40)
	}
	return t.StreamStatus
}

// signalsTransmittersVerifyCommand asks the transmitter for a
// verification event on the stream we created there.
func signalsTransmittersVerifyCommand(ctx context.Context, c *cli, args []string) error {
	store, id, done, err := c.transmitterCommand(ctx, "signals transmitters verify", args, true)
	if err != nil {
		return err
	}
	defer done()
	if err := store.RequestVerification(ctx, id); errors.Is(err, receiver.ErrNotFound) {
		return fmt.Errorf("signals transmitters verify: no transmitter %q", id)
	} else if errors.Is(err, receiver.ErrInvalid) || errors.Is(err, receiver.ErrTransmitter) {
		return fmt.Errorf("signals transmitters verify: %w", err)
	} else if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "verification requested of %s: 'idp signals transmitters list' shows when its event arrives\n", id)
	return err
}

// transmitterCommand parses "ID [flags]" and opens the store, with the
// credentials' box when needed (or, if !needBox, when IDP_SECRET is set).
func (c *cli) transmitterCommand(ctx context.Context, name string, args []string, needBox bool) (*receiver.Store, string, func(), error) {
	fs := c.flags(name, "ID")
	dbURL := c.databaseFlag(fs)
	set := newSettings(fs, c.getenv)
	allowPrivate := set.Bool("allow-private-backchannel", "IDP_ALLOW_PRIVATE_BACKCHANNEL", false,
		"let its URLs be on this host or a private network: for demos and tests")
	// The ID comes first (remove ID [flags]); flags may follow it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(fs, args); err != nil {
			return nil, "", nil, err
		}
		return nil, "", nil, usagef("%s: name one transmitter ID (see 'idp signals transmitters list')", name)
	}
	id := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return nil, "", nil, err
	}
	if err := set.err(); err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", name, err)
	}
	store := &receiver.Store{AllowPrivate: *allowPrivate}
	if needBox || c.getenv("IDP_SECRET") != "" {
		box, err := c.transmitterBox(name, "opens the credential for the transmitter")
		if err != nil {
			return nil, "", nil, err
		}
		store.Box = box
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return nil, "", nil, err
	}
	store.Pool = pool
	return store, id, pool.Close, nil
}

// signalsTransmittersRemoveCommand forgets a transmitter, and deletes
// the stream we created there (best effort: an unreachable transmitter
// is said, and the transmitter is forgotten here all the same).
func signalsTransmittersRemoveCommand(ctx context.Context, c *cli, args []string) error {
	store, id, done, err := c.transmitterCommand(ctx, "signals transmitters remove", args, false)
	if err != nil {
		return err
	}
	defer done()
	t, err := store.Get(ctx, id)
	if errors.Is(err, receiver.ErrNotFound) {
		return fmt.Errorf("signals transmitters remove: no transmitter %q", id)
	} else if err != nil {
		return err
	}
	if t.StreamID != "" && store.Box == nil {
		return usagef("signals transmitters remove: IDP_SECRET is required to delete the stream we created at %s", t.Issuer)
	}
	deleteErr := store.DeleteStream(ctx, t)
	if err := store.Remove(ctx, id); errors.Is(err, receiver.ErrNotFound) {
		return fmt.Errorf("signals transmitters remove: no transmitter %q", id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "transmitter %s removed\n", id)
	switch {
	case t.StreamID == "":
	case deleteErr != nil:
		fmt.Fprintf(c.stderr, "note: stream %s at %s is not deleted (%v): delete it there\n", t.StreamID, t.Issuer, deleteErr)
	default:
		fmt.Fprintf(c.stdout, "stream %s deleted at %s\n", t.StreamID, t.Issuer)
	}
	return nil
}
