// Package activities holds OrderFlow's Temporal activities: thin adapters, each calling
// one method of the order-book service (package orderbook), which does the work in one
// PostgreSQL transaction and is idempotent under retry, and mapping its errors to
// Temporal's retryable and non-retryable failures.
package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// Error types that workflows' retry policies treat as permanent.
const (
	ErrTypeUnknownOrder      = "UnknownOrder"
	ErrTypeInvalidTransition = "InvalidTransition"
	// ErrTypeUnknownInstrument: the order's instrument no longer exists.
	ErrTypeUnknownInstrument = "UnknownInstrument"
	// ErrTypeStaleVersion marks an optimistic-lock conflict: retryable, and retried.
	ErrTypeStaleVersion = "StaleVersion"
)

// notifyWorkers bounds the fill signals Execute sends at once, however many resting
// orders a step traded with.
const notifyWorkers = 8

// Activities are the lifecycle steps over the order-book service.
type Activities struct {
	book     *orderbook.Service
	log      *slog.Logger
	notifier FillNotifier // nil: the workflow signals the counterparties itself
}

// FillNotifier tells a resting order's run that a trade left the order in status; a
// run that does not exist is not an error. (The workflows package's Starter is one.)
type FillNotifier interface {
	NotifyFill(ctx context.Context, orderID int64, status order.Status) error
}

// New returns the activities over book. With a notifier, Execute tells the runs of the
// resting orders it traded with about their fills; without one (nil), it reports them in
// its result for the workflow to tell. (Every exported method of Activities is
// registered as an activity, hence no setters.)
func New(book *orderbook.Service, logger *slog.Logger, notifier FillNotifier) *Activities {
	return &Activities{book: book, log: logger, notifier: notifier}
}

// StepResult is where an order stands after a step, with what the workflow shows
// operators about it (search attributes and summary).
type StepResult struct {
	Status       order.Status
	Reason       string
	Remaining    int64
	UserID       int64
	InstrumentID int64
	Side         order.Side
	Kind         order.Kind
	Quantity     int64
	Price        string // empty for MARKET
}

func resultOf(o queries.Order) StepResult {
	r := StepResult{
		Status: order.Status(o.Status), Reason: o.Reason, Remaining: o.RemainingQuantity,
		UserID: o.UserID, InstrumentID: o.InstrumentID, Side: order.Side(o.Side), Kind: order.Kind(o.Kind),
		Quantity: o.Quantity,
	}
	if o.Price.Valid {
		r.Price = o.Price.Decimal.String()
	}
	return r
}

// Counterparty is a resting order that an executed order traded with, and the status
// that trade left it in, so that order's run can be told about its fill.
type Counterparty struct {
	OrderID int64
	Status  order.Status
}

// ExecuteResult is where an order stands after one step of matching. More says the
// sweep continues: the workflow runs Execute again. Counterparties are the runs the
// workflow must tell of their fills, listed only when the activities have no notifier.
type ExecuteResult struct {
	StepResult
	Counterparties []Counterparty
	More           bool
}

// CancelInput says which order to cancel and why.
type CancelInput struct {
	OrderID     int64
	Reason      string
	RequestedBy string
}

// FailInput says which order to fail, why, and who decided.
type FailInput struct {
	OrderID     int64
	Reason      string
	RequestedBy string
}

// StallInput records that a step exhausted its retry budget.
type StallInput struct {
	OrderID  int64
	Step     string
	Error    string
	Attempts int32
}

// ResumeInput records an operator's retry of a parked order.
type ResumeInput struct {
	OrderID     int64
	Step        string
	RequestedBy string
}

// failure maps the service's errors to Temporal's: an unknown order or instrument and a
// move the transition table forbids are permanent; a stale version is retried, as is
// anything else (the database unavailable, a timeout).
func failure(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, orderbook.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownOrder, err)
	case errors.Is(err, orderbook.ErrInstrumentNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownInstrument, err)
	case errors.Is(err, orderbook.ErrInvalidTransition):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidTransition, err)
	case errors.Is(err, orderbook.ErrStale):
		return temporal.NewApplicationErrorWithCause(err.Error(), ErrTypeStaleVersion, err)
	}
	return err
}

// step adapts a service method that returns the order.
func step(o queries.Order, err error) (StepResult, error) {
	if err != nil {
		return StepResult{}, failure(err)
	}
	return resultOf(o), nil
}

// Validate checks the business rules: CREATED → VALIDATED, or REJECTED with the reason.
func (a *Activities) Validate(ctx context.Context, orderID int64) (StepResult, error) {
	return step(a.book.Validate(ctx, orderID))
}

// SendToExecutor hands a validated order to matching: VALIDATED → SENT_TO_EXECUTOR.
func (a *Activities) SendToExecutor(ctx context.Context, orderID int64) (StepResult, error) {
	return step(a.book.Dispatch(ctx, orderID))
}

// Cancel applies a cancel (CANCELLED, or PARTIALLY_CANCELLED after fills); an order that
// already ended is left as it is.
func (a *Activities) Cancel(ctx context.Context, in CancelInput) (StepResult, error) {
	return step(a.book.Cancel(ctx, orderbook.CancelRequest{OrderID: in.OrderID, Reason: in.Reason, RequestedBy: in.RequestedBy}))
}

// Fail ends an order that cannot proceed as FAILED, and unparks it.
func (a *Activities) Fail(ctx context.Context, in FailInput) (StepResult, error) {
	return step(a.book.Fail(ctx, orderbook.FailRequest{OrderID: in.OrderID, Reason: in.Reason, RequestedBy: in.RequestedBy}))
}

// MarkStalled parks an order whose step exhausted its retry budget.
func (a *Activities) MarkStalled(ctx context.Context, in StallInput) (StepResult, error) {
	return step(a.book.Park(ctx, orderbook.ParkRequest{OrderID: in.OrderID, Step: in.Step, Error: in.Error, Attempts: in.Attempts}))
}

// Resume unparks an order for an operator's retry.
func (a *Activities) Resume(ctx context.Context, in ResumeInput) (StepResult, error) {
	return step(a.book.Resume(ctx, orderbook.ResumeRequest{OrderID: in.OrderID, Step: in.Step, RequestedBy: in.RequestedBy}))
}

// Execute runs one step of matching (see orderbook.Service.Match), then tells the runs
// of the resting orders whose status its fills changed. A notice that could not be
// delivered fails the activity; the retry's step hands it back and sends it again.
func (a *Activities) Execute(ctx context.Context, orderID int64) (ExecuteResult, error) {
	res, err := a.book.Match(ctx, orderID)
	if err != nil {
		return ExecuteResult{}, failure(err)
	}
	out := ExecuteResult{StepResult: resultOf(res.Order), More: res.More}
	if a.notifier == nil {
		for _, n := range res.Notices {
			out.Counterparties = append(out.Counterparties, Counterparty{OrderID: n.OrderID, Status: n.Status})
		}
		return out, nil
	}
	if err := a.notify(ctx, res.Notices); err != nil {
		return ExecuteResult{}, err
	}
	return out, nil
}

// notify delivers the notices with notifyWorkers signals in flight at most, and deletes
// those delivered; it returns the first delivery error.
func (a *Activities) notify(ctx context.Context, notices []orderbook.FillNotice) error {
	if len(notices) == 0 {
		return nil
	}
	work := make(chan orderbook.FillNotice)
	var (
		mu        sync.Mutex
		delivered []int64
		firstErr  error
		wg        sync.WaitGroup
	)
	for range min(notifyWorkers, len(notices)) {
		wg.Go(func() {
			for n := range work {
				err := a.notifier.NotifyFill(ctx, n.OrderID, n.Status)
				mu.Lock()
				if err == nil {
					delivered = append(delivered, n.ID)
				} else if firstErr == nil {
					firstErr = fmt.Errorf("notify order %d of its fill: %w", n.OrderID, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range notices {
		work <- n
	}
	close(work)
	wg.Wait()
	if err := a.book.FillsNotified(ctx, delivered); err != nil && firstErr == nil {
		// Delivered but still listed: the next step sends them again, which the runs
		// take as the no-op it is.
		a.log.Warn("fill notices delivered but not deleted", "order_id", notices[0].OrderID, "error", err)
	}
	return firstErr
}
