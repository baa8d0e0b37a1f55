package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// runBroker is `orderflow broker`; see the package comment.
func runBroker(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	return errors.New("orderflow broker: not implemented yet")
}
