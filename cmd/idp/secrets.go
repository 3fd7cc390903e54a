package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/idp/idp/internal/mfa"
	"github.com/idp/idp/internal/secrets"
	"github.com/idp/idp/internal/sso/keys"
)

// reencryptResult is what idp secrets reencrypt reports.
type reencryptResult struct {
	TOTPSecrets int `json:"totp_secrets"`
	SigningKeys int `json:"signing_keys"`
	// Unopened names each value no secret in IDP_SECRET opens, by user id
	// or kid; those rows are left as they are.
	Unopened []string `json:"unopened"`
}

// secretsReencryptCommand re-seals under the first value of IDP_SECRET every
// TOTP secret and private signing key that another value of the list
// sealed, so those values can leave it. Rows are swapped only if unchanged since
// read, so it runs safely beside the instances and is idempotent.
//
// The secret comes from IDP_SECRET only, as for keys rotate: a flag would
// put the old and new secrets in shell history and process listings.
func secretsReencryptCommand(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("secrets reencrypt", "[--database-url URL] [--json]   (IDP_SECRET=new,old…)")
	dbURL := c.databaseFlag(fs)
	asJSON := jsonFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	secret := c.getenv("IDP_SECRET")
	if secret == "" {
		return usagef("secrets reencrypt: IDP_SECRET is required: the new server secret first, then every older " +
			"one that may have sealed a value (new,old)")
	}
	totpBox, err := secrets.New(secret, mfa.SecretPurpose)
	if err != nil {
		return usageError{err}
	}
	keyBox, err := secrets.New(secret, keys.SecretPurpose)
	if err != nil {
		return usageError{err}
	}

	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var res reencryptResult
	// Both run whatever the other found: an unreadable TOTP secret is no
	// reason to leave the signing keys under the old secret.
	res.TOTPSecrets, err = (&mfa.TOTP{Pool: pool, Box: totpBox}).ReencryptAll(ctx)
	var failed []error
	res.Unopened, failed = sortFailures(res.Unopened, failed, err)
	res.SigningKeys, err = keys.ReencryptAll(ctx, pool, keyBox)
	res.Unopened, failed = sortFailures(res.Unopened, failed, err)

	if *asJSON {
		if res.Unopened == nil {
			res.Unopened = []string{}
		}
		if err := printJSON(c.stdout, res); err != nil {
			failed = append(failed, err)
		}
	} else {
		fmt.Fprintf(c.stdout, "re-sealed %s and %s under the first value of IDP_SECRET\n",
			plural(res.TOTPSecrets, "TOTP secret"), plural(res.SigningKeys, "signing key"))
		if len(res.Unopened) == 0 && len(failed) == 0 {
			fmt.Fprintln(c.stdout, "no TOTP secret or signing key needs an older value of IDP_SECRET any more")
		}
	}

	if len(res.Unopened) > 0 {
		// The package errors name the row and say no key opened it; they
		// never carry a secret.
		failed = append(failed, fmt.Errorf("no value of IDP_SECRET opens %s; left as they are "+
			"(add the server secret that sealed them to IDP_SECRET and run again):\n  %s",
			plural(len(res.Unopened), "stored value"), strings.Join(res.Unopened, "\n  ")))
	}
	if len(failed) > 0 {
		return fmt.Errorf("secrets reencrypt: %w", errors.Join(failed...))
	}
	return nil
}

// sortFailures adds the parts of a ReencryptAll error to unopened (values
// no configured key opens) or failed (anything else, such as a lost
// database connection).
func sortFailures(unopened []string, failed []error, err error) ([]string, []error) {
	if err == nil {
		return unopened, failed
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	for _, e := range parts {
		if errors.Is(e, secrets.ErrDecrypt) {
			unopened = append(unopened, e.Error())
		} else {
			failed = append(failed, e)
		}
	}
	return unopened, failed
}
