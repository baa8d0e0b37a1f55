package main

import (
	"context"
	"errors"
	"io"
)

// runAudit is `orderflow audit`; see the package comment.
func runAudit(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	return errors.New("orderflow audit: not implemented yet")
}
