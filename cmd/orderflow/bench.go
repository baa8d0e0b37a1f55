package main

import (
	"context"
	"errors"
	"io"
)

// runBench is `orderflow bench`; see the package comment.
func runBench(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	return errors.New("orderflow bench: not implemented yet")
}
