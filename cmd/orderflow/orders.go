package main

import (
	"context"
	"errors"
	"io"
)

// runOrders is `orderflow orders`; see the package comment.
func runOrders(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	return errors.New("orderflow orders: not implemented yet")
}
