package main

import (
	"context"
	"fmt"
	"time"

	"github.com/idp/idp/internal/audit"
	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/registration"
)

// clientsRegistrationTokenCommand makes an initial access token for
// dynamic client registration (RFC 7591) and prints it once: whoever
// holds it may register clients at /oauth2/register until it expires or
// its uses run out.
func clientsRegistrationTokenCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clients registration-token", "[--ttl 24h] [--uses N] [--json]")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token can register clients")
	uses := fs.Int("uses", 0, "how many clients it may register (`N`); 0 for any number until it expires")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *ttl <= 0 {
		return usagef("clients registration-token: --ttl must be a positive duration like 24h, not %s", *ttl)
	}
	if *uses < 0 {
		return usagef("clients registration-token: --uses must be 0 (any number) or more, not %d", *uses)
	}
	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	tokens := &registration.Tokens{Pool: pool, Now: time.Now}
	var tok registration.InitialToken
	err = db.Tx(ctx, pool, func(ctx context.Context) error {
		var err error
		if tok, err = tokens.Issue(ctx, *ttl, *uses); err != nil {
			return err
		}
		return audit.Record(ctx, time.Now(), audit.CLI, registration.ActionIssueToken, "registration_token:"+tok.ID,
			map[string]any{"expires_at": tok.ExpiresAt, "uses": tok.Uses})
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, tok)
	}
	limit := "any number of clients"
	if tok.Uses > 0 {
		limit = fmt.Sprintf("%d client(s)", tok.Uses)
	}
	_, err = fmt.Fprintf(c.stdout, "initial_access_token: %s\n\n"+
		"It registers %s at /oauth2/register (Authorization: Bearer <token>) until %s.\n"+
		"It is shown only this once (only its hash is stored).\n", tok.Token, limit, tok.ExpiresAt.UTC().Format(time.RFC3339))
	return err
}
