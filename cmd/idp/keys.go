package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
)

// minPublishAhead is how long a new key must be published before it signs
// so that nobody meets a token signed by a key they have not fetched: the
// JWKS's Cache-Control max-age (60 s) plus the interval at which running
// instances reload keys (30 s).
const minPublishAhead = 90 * time.Second

// keysRotateCommand adds a signing key: published at once, signing from
// --publish-ahead on. The superseded key stays published until every token
// it signed is dead; the running instances retire it.
func keysRotateCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("keys rotate", "[--alg RS256|ES256] [--publish-ahead 10m] [--json]")
	alg := fs.String("alg", keys.RS256, "signing `algorithm`: "+strings.Join(keys.Algorithms(), " or "))
	ahead := fs.Duration("publish-ahead", 10*time.Minute,
		"how long the key is published before it signs; at least "+minPublishAhead.String()+" (JWKS cache plus key reload)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains(keys.Algorithms(), *alg) {
		return usagef("keys rotate: --alg must be %s, not %q", strings.Join(keys.Algorithms(), " or "), *alg)
	}
	if *ahead < 0 {
		return usagef("keys rotate: --publish-ahead must not be negative, not %s", *ahead)
	}
	secret := c.getenv("IDP_SECRET")
	if secret == "" {
		return usagef("keys rotate: IDP_SECRET is required: the same server secret as the running instances, " +
			"which seals the new private key")
	}
	box, err := secrets.New(secret, keys.SecretPurpose)
	if err != nil {
		return usageError{err}
	}
	if *ahead < minPublishAhead {
		fmt.Fprintf(c.stderr, "warning: --publish-ahead %s is shorter than %s: apps that cached the key set "+
			"may reject tokens signed by the new key until they fetch it again\n", *ahead, minPublishAhead)
	}

	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Load opens every existing key: with the wrong secret it fails here,
	// before a key the instances could not open is stored.
	set, err := keys.Load(ctx, pool, box, nil)
	if err != nil {
		return err
	}
	var kid string
	err = audited(ctx, pool, "keys.rotate", func(ctx context.Context) (string, any, error) {
		var err error
		kid, err = set.Rotate(ctx, *alg, *ahead)
		return "key:" + kid, map[string]any{"alg": *alg, "publish_ahead": ahead.String()}, err
	})
	if err != nil {
		return err
	}
	k, err := readKey(ctx, pool, kid)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, k)
	}
	_, err = fmt.Fprintf(c.stdout, "new %s key %s published now, signing from %s\n",
		k.Alg, k.Kid, k.ActiveAt.Local().Format(time.RFC3339))
	return err
}

// keyInfo is one signing key as idp keys list shows it. No private part.
type keyInfo struct {
	Kid       string     `json:"kid"`
	Alg       string     `json:"alg"`
	CreatedAt time.Time  `json:"created_at"`
	ActiveAt  time.Time  `json:"active_at"`
	RetiredAt *time.Time `json:"retired_at"`
	// State is "signing" (the key new tokens of its algorithm are signed
	// with), "next" (published, signing from active_at), "published"
	// (superseded, still in the JWKS for the tokens it signed) or
	// "retired".
	State string `json:"state" db:"-"`
}

const keyColumns = `kid, alg, created_at, active_at, retired_at`

// keysListCommand lists the signing keys. It reads only public metadata,
// so it needs no server secret.
func keysListCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("keys list", "[--json]")
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
	rows, err := pool.Query(ctx, `SELECT `+keyColumns+` FROM signing_keys
		ORDER BY alg, active_at DESC, created_at DESC, kid COLLATE "C" DESC`)
	if err != nil {
		return fmt.Errorf("keys list: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[keyInfo])
	if err != nil {
		return fmt.Errorf("keys list: %w", err)
	}
	labelStates(list, time.Now())
	return printList(c.stdout, *asJSON, list, "", "KID\tALG\tSTATE\tCREATED\tACTIVE FROM\tRETIRED", func(k keyInfo) []string {
		retired := "-"
		if k.RetiredAt != nil {
			retired = k.RetiredAt.Local().Format(time.RFC3339)
		}
		return []string{k.Kid, k.Alg, k.State, k.CreatedAt.Local().Format(time.RFC3339), k.ActiveAt.Local().Format(time.RFC3339), retired}
	})
}

// labelStates sets State on keys sorted by alg, then newest first (the
// order keys.Set picks its signer in).
func labelStates(list []keyInfo, now time.Time) {
	signing := map[string]bool{}
	for i := range list {
		k := &list[i]
		switch {
		case k.RetiredAt != nil:
			k.State = "retired"
		case k.ActiveAt.After(now):
			k.State = "next"
		case !signing[k.Alg]:
			k.State = "signing"
			signing[k.Alg] = true
		default:
			k.State = "published"
		}
	}
}

func readKey(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, kid string) (keyInfo, error) {
	rows, err := q.Query(ctx, `SELECT `+keyColumns+` FROM signing_keys WHERE kid = $1`, kid)
	if err != nil {
		return keyInfo{}, fmt.Errorf("keys: read %s: %w", kid, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[keyInfo])
	if err != nil {
		return keyInfo{}, fmt.Errorf("keys: read %s: %w", kid, err)
	}
	k.State = "next"
	if !k.ActiveAt.After(time.Now()) {
		k.State = "signing"
	}
	return k, nil
}
