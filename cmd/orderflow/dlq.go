package main

import (
	"context"
	"errors"
	"io"
)

// runDLQ is `orderflow dlq`; see the package comment.
func runDLQ(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	return errors.New("orderflow dlq: not implemented yet")
}
