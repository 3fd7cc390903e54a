package main

import (
	"context"
	"errors"
)

// serveCommand runs the identity provider. Placeholder: the lead writes it.
// args are the arguments after "serve".
func serveCommand(ctx context.Context, c *cli, args []string) error {
	return errors.New("serve: not built yet")
}
