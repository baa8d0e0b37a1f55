package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// change is one status change: where to, the remaining quantity after it (nil: unchanged),
// the reason (kept if empty) and what the event records beyond the statuses.
type change struct {
	to        order.Status
	remaining *int64
	reason    string
	details   map[string]any
}

// transition is the one function that changes an order's status. It checks the move
// against the transition table, applies it only if the order still has the version it
// was read at, and appends the matching event, all through q (so inside the caller's
// transaction). It returns ErrStale when the row moved on, and a non-retryable error for a
// move the table forbids.
func transition(ctx context.Context, q *txn, o queries.Order, c change) (queries.Order, error) {
	from := order.Status(o.Status)
	if err := order.CheckTransition(from, c.to); err != nil {
		return o, temporal.NewNonRetryableApplicationError(fmt.Sprintf("order %d: %v", o.ID, err), ErrTypeInvalidTransition, err)
	}
	remaining := o.RemainingQuantity
	if c.remaining != nil {
		remaining = *c.remaining
	}
	reason := o.Reason
	if c.reason != "" {
		reason = c.reason
	}
	next, err := q.TransitionOrder(ctx, queries.TransitionOrderParams{
		ID: o.ID, Version: o.Version, Status: string(c.to), RemainingQuantity: remaining, Reason: reason,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return o, temporal.NewApplicationErrorWithCause(fmt.Sprintf("order %d version %d: %v", o.ID, o.Version, ErrStale), ErrTypeStaleVersion, ErrStale)
	}
	if err != nil {
		return o, fmt.Errorf("transition order %d to %s: %w", o.ID, c.to, err)
	}
	details := map[string]any{}
	for k, v := range c.details {
		details[k] = v
	}
	if c.reason != "" {
		details["reason"] = c.reason
	}
	if remaining != o.RemainingQuantity || c.remaining != nil {
		details["remainingQuantity"] = remaining
	}
	body, err := json.Marshal(details)
	if err != nil {
		return o, fmt.Errorf("event details: %w", err)
	}
	q.changes = append(q.changes, [2]order.Status{from, c.to})
	fromText := string(from)
	if _, err := q.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
		OrderID: o.ID, EventType: string(order.EventFor(c.to)), FromStatus: &fromText, ToStatus: string(c.to), Details: body,
	}); err != nil {
		return o, fmt.Errorf("append event for order %d: %w", o.ID, err)
	}
	return next, nil
}

// annotate appends an event that does not change the status (from = to = the current
// status). The caller must have updated, and so locked, the order's row in the same
// transaction, which keeps seq free of races.
func annotate(ctx context.Context, q *txn, o queries.Order, e order.EventType, details map[string]any) error {
	body, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("event details: %w", err)
	}
	status := o.Status
	if _, err := q.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
		OrderID: o.ID, EventType: string(e), FromStatus: &status, ToStatus: status, Details: body,
	}); err != nil {
		return fmt.Errorf("append %s for order %d: %w", e, o.ID, err)
	}
	return nil
}
