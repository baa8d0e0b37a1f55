package orderbook

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Every method here is idempotent: it first reads the order, and when the order is
// already past the step (a retry after a commit whose reply was lost, or a replayed Kafka
// message) it changes nothing and returns the order as it stands.

// Validate checks the business rules (instrument known and active, tick size, lot size,
// quantity range) and hands a valid order to matching: CREATED → VALIDATED →
// SENT_TO_EXECUTOR, both events written by one statement, or REJECTED with the reason.
// Its one write is one order's change, checked against the version read, so it runs
// without a transaction (inStatement). An order already past CREATED is returned as it
// stands; one left VALIDATED by an earlier release is moved on by Dispatch.
func (s *Service) Validate(ctx context.Context, id int64) (o queries.Order, err error) {
	err = s.inStatement(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, id, false); err != nil || order.Status(o.Status) != order.Created {
			return err
		}
		reason, err := tx.rejection(ctx, o)
		if err != nil {
			return err
		}
		if reason != "" {
			o, err = tx.transition(ctx, o, move{to: order.Rejected, reason: reason}, nil)
			return err
		}
		var cs changeSet
		cs.setStatus(o, order.SentToExecutor, o.RemainingQuantity, "", false, false)
		for _, m := range [][2]order.Status{{order.Created, order.Validated}, {order.Validated, order.SentToExecutor}} {
			if err := cs.event(event{orderID: o.ID, typ: order.EventFor(m[1]), from: m[0], to: m[1]}); err != nil {
				return err
			}
		}
		rows, err := tx.apply(ctx, &cs)
		if err != nil {
			return fmt.Errorf("order %d to %s: %w", o.ID, order.SentToExecutor, err)
		}
		o = rows[o.ID]
		return nil
	})
	return o, err
}

// rejection returns why o may not trade on its instrument, or "" if it may.
func (tx *txn) rejection(ctx context.Context, o queries.Order) (string, error) {
	inst, err := tx.GetInstrument(ctx, o.InstrumentID)
	if errors.Is(err, pgx.ErrNoRows) {
		return order.ReasonUnknownInstrument, nil
	}
	if err != nil {
		return "", fmt.Errorf("get instrument %d: %w", o.InstrumentID, err)
	}
	return rules(inst).Rejection(order.Kind(o.Kind), o.Price.Decimal, o.Quantity), nil
}

// rules is what the domain rules need to know of an instrument.
func rules(inst queries.Instrument) order.Instrument {
	return order.Instrument{
		ID: inst.ID, Symbol: inst.Symbol, TickSize: inst.TickSize, LotSize: inst.LotSize,
		MinQty: inst.MinQuantity, MaxQty: inst.MaxQuantity, Active: inst.Status == InstrumentActive,
	}
}

// Dispatch hands a validated order to matching: VALIDATED → SENT_TO_EXECUTOR.
func (s *Service) Dispatch(ctx context.Context, id int64) (o queries.Order, err error) {
	err = s.inStatement(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, id, false); err != nil || order.Status(o.Status) != order.Validated {
			return err
		}
		o, err = tx.transition(ctx, o, move{to: order.SentToExecutor}, nil)
		return err
	})
	return o, err
}

// CancelRequest says which order to cancel, why (default CANCELLED_BY_CLIENT) and who
// asked.
type CancelRequest struct {
	OrderID     int64
	Reason      string
	RequestedBy string
}

// RecordCancel records a client's request to cancel order id: the order is marked
// cancel-requested, which takes it off the book at once (it never trades again, as a
// resting order or as an aggressor, though a fill already committed stands), and, the
// first time only, CANCEL_REQUESTED joins its timeline. The run applies the cancel with
// Cancel. requestedBy is recorded in the event; empty means the order's own user. A
// precondition (the request's If-Match), if not nil, is checked against the order under
// its row lock: an order that fails it is left alone and returned with ErrPrecondition.
// It returns ErrNotFound, or a *StatusError wrapping ErrTerminal for an order that has
// ended.
func (s *Service) RecordCancel(ctx context.Context, id int64, requestedBy string, precondition func(queries.Order) bool) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		// The row lock makes "first time" exact under concurrent cancels.
		before, err := tx.getOrder(ctx, id, true)
		if err != nil {
			return err
		}
		if precondition != nil && !precondition(before) {
			o = before
			return ErrPrecondition
		}
		if st := order.Status(before.Status); st.Terminal() {
			return &StatusError{OrderID: id, Status: st, Err: ErrTerminal}
		}
		if o, err = tx.MarkCancelRequested(ctx, queries.MarkCancelRequestedParams{
			ID: id, TerminalStatuses: order.Names(order.TerminalStatuses()),
		}); err != nil {
			return fmt.Errorf("mark order %d cancel-requested: %w", id, err)
		}
		if before.CancelRequested {
			return nil
		}
		if requestedBy == "" {
			requestedBy = "user:" + strconv.FormatInt(before.UserID, 10)
		}
		return tx.annotate(ctx, o, order.EventCancelRequested, map[string]any{"requestedBy": requestedBy})
	})
	return o, err
}

// Cancel applies a cancel: what is left of the order ends CANCELLED if nothing was
// filled, else PARTIALLY_CANCELLED, and leaves the book. An order that is already
// terminal (a fill won the race) is left as it is, and its status is the truthful answer.
func (s *Service) Cancel(ctx context.Context, req CancelRequest) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, req.OrderID, false); err != nil || order.Status(o.Status).Terminal() {
			return err
		}
		o, err = tx.cancel(ctx, o, req)
		return err
	})
	return o, err
}

// Expire ends order id EXPIRED if it still rests at its expiry (a DAY or GTD order),
// under the instrument's lock, so never between two fills of a match. An order that has
// ended is left as it is, and so is one whose expiry has not come by the database's clock.
func (s *Service) Expire(ctx context.Context, id int64) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, id, false); err != nil || order.Status(o.Status).Terminal() {
			return err
		}
		if _, _, err := tx.lockInstrument(ctx, o.InstrumentID); err != nil {
			return err
		}
		if o, err = tx.getOrder(ctx, id, true); err != nil {
			return err
		}
		due, err := tx.ExpiryDue(ctx, id)
		if err != nil || !due || order.Status(o.Status).Terminal() {
			return err
		}
		o, err = tx.transition(ctx, o, move{to: order.Expired, reason: expiryReason(o)}, nil)
		return err
	})
	return o, err
}

// expiryReason is the reason an expiring order of o's time in force ends with.
func expiryReason(o queries.Order) string {
	if order.TimeInForce(o.TimeInForce) == order.DAY {
		return order.ReasonExpiredDay
	}
	return order.ReasonExpiredGTD
}

// cancel applies req to o under the instrument's lock, so a cancel never interleaves
// with a match of the same book.
func (tx *txn) cancel(ctx context.Context, o queries.Order, req CancelRequest) (queries.Order, error) {
	if _, _, err := tx.lockInstrument(ctx, o.InstrumentID); err != nil {
		return o, err
	}
	o, err := tx.getOrder(ctx, o.ID, true)
	if err != nil {
		return o, err
	}
	st := order.Status(o.Status)
	if st.Terminal() {
		return o, nil
	}
	// A cancel ends a parked order too (its run was cancelled while parked): an order
	// that has ended waits for no operator.
	if o.NeedsAttention {
		if o, err = tx.ClearStalled(ctx, o.ID); err != nil {
			return o, fmt.Errorf("unpark order %d: %w", o.ID, err)
		}
	}
	reason := req.Reason
	if reason == "" {
		reason = order.ReasonCancelledByClient
	}
	details := map[string]any{}
	if req.RequestedBy != "" {
		details["requestedBy"] = req.RequestedBy
	}
	return tx.transition(ctx, o, move{to: remainderCancelled(st), reason: reason}, details)
}

// remainderCancelled is the status an order in status st ends in when its remainder is
// cancelled: PARTIALLY_CANCELLED once something was filled.
func remainderCancelled(st order.Status) order.Status {
	if st == order.PartiallyFilled {
		return order.PartiallyCancelled
	}
	return order.Cancelled
}

// FailRequest says which order to fail, why, and who decided ("" for the system).
type FailRequest struct {
	OrderID     int64
	Reason      string
	RequestedBy string
}

// Fail ends an order that cannot proceed (a permanent error, or an operator's decision
// on a parked order) as FAILED, takes it off the book and unparks it. An order that can
// no longer fail (it has ended) is left as it is.
func (s *Service) Fail(ctx context.Context, req FailRequest) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, req.OrderID, false); err != nil || !order.CanTransition(order.Status(o.Status), order.Failed) {
			return err
		}
		// A resting order is part of the book: change it under the book's lock.
		if _, _, err := tx.lockInstrument(ctx, o.InstrumentID); err != nil {
			return err
		}
		if o, err = tx.getOrder(ctx, req.OrderID, true); err != nil || !order.CanTransition(order.Status(o.Status), order.Failed) {
			return err
		}
		if o.NeedsAttention {
			if o, err = tx.ClearStalled(ctx, o.ID); err != nil {
				return fmt.Errorf("unpark order %d: %w", o.ID, err)
			}
		}
		details := map[string]any{}
		if req.RequestedBy != "" {
			details["requestedBy"] = req.RequestedBy
		}
		o, err = tx.transition(ctx, o, move{to: order.Failed, reason: req.Reason}, details)
		return err
	})
	return o, err
}

// ParkRequest records that a step exhausted its retry budget.
type ParkRequest struct {
	OrderID  int64
	Step     string
	Error    string
	Attempts int32
}

// Park records that the order's step exhausted its retries and the order waits for an
// operator: it sets the order's needs-attention flag and last error and appends
// EXECUTION_STALLED, leaving the status as it is. A retry after a lost reply finds the
// order parked for the step and does nothing, and so does a park that comes after the
// order ended (its run was cancelled while the park was being recorded).
func (s *Service) Park(ctx context.Context, req ParkRequest) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, req.OrderID, false); err != nil || (o.NeedsAttention && o.StalledStep == req.Step) ||
			order.Status(o.Status).Terminal() {
			return err
		}
		if o, err = tx.MarkStalled(ctx, queries.MarkStalledParams{ID: o.ID, LastError: req.Error, StalledStep: req.Step}); err != nil {
			return fmt.Errorf("park order %d: %w", req.OrderID, err)
		}
		return tx.annotate(ctx, o, order.EventExecutionStalled, map[string]any{
			"step": req.Step, "error": req.Error, "attempts": req.Attempts,
		})
	})
	return o, err
}

// ResumeRequest records an operator's retry of a parked order.
type ResumeRequest struct {
	OrderID     int64
	Step        string
	RequestedBy string
}

// Resume unparks an order for an operator's retry and appends OPERATOR_RETRY; an order
// that is not parked (a retry after a lost reply) is left as it is. A cancel recorded
// while the order was parked still holds: the retried step applies it instead of
// trading (see Match).
func (s *Service) Resume(ctx context.Context, req ResumeRequest) (o queries.Order, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		if o, err = tx.getOrder(ctx, req.OrderID, false); err != nil || !o.NeedsAttention {
			return err
		}
		if o, err = tx.ClearStalled(ctx, o.ID); err != nil {
			return fmt.Errorf("unpark order %d: %w", req.OrderID, err)
		}
		return tx.annotate(ctx, o, order.EventOperatorRetry, map[string]any{
			"step": req.Step, "requestedBy": req.RequestedBy,
		})
	})
	return o, err
}
