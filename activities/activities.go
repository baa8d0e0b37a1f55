// Package activities holds OrderFlow's Temporal activities: thin adapters, each calling
// one method of the order-book service (package orderbook), which does the work in one
// PostgreSQL transaction and is idempotent under retry, and mapping its errors to
// Temporal's retryable and non-retryable failures.
package activities

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/shopspring/decimal"
	"go.temporal.io/sdk/activity"
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
	// ErrTypeForeignRun: the run is not its order's (orderbook.ErrForeignRun).
	ErrTypeForeignRun = "ForeignRun"
	// ErrTypeInvalidAmendment: an amendment's input cannot be read (the API checks it
	// before sending it, so only a hand-made Update gets this).
	ErrTypeInvalidAmendment = "InvalidAmendment"
)

// Activities are the lifecycle steps over the order-book service.
type Activities struct {
	book     *orderbook.Service
	log      *slog.Logger
	notifier orderbook.FillNotifier // nil: the workflow signals the counterparties itself
}

// New returns the activities over book. With a notifier, Execute tells the runs of the
// resting orders it traded with about their fills; without one (nil), it reports them in
// its result for the workflow to tell. (Every exported method of Activities is
// registered as an activity, hence no setters.)
func New(book *orderbook.Service, logger *slog.Logger, notifier orderbook.FillNotifier) *Activities {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
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
	// ExpireAt is a DAY or GTD order's expiry, when its run expires it if it still rests.
	ExpireAt *time.Time `json:",omitempty"`
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
	r.ExpireAt = o.ExpireAt
	return r
}

// Counterparty is a resting order that an executed order traded with, and the status
// that trade left it in, so that order's run can be told about its fill.
type Counterparty struct {
	OrderID int64
	RunKey  string
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
	case errors.Is(err, orderbook.ErrForeignRun):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeForeignRun, err)
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

// acting returns ctx naming the run the activity works for (orderbook.ActingFor), taken
// from its workflow id, so that a run started for an order of another history of the
// database acts on nothing. A workflow id that names no order's run (a start by hand with
// an order id in its input) names a run no order has. Called outside an activity (a
// test, a tool), ctx is returned as it is.
func acting(ctx context.Context) context.Context {
	if !activity.IsActivity(ctx) {
		return ctx
	}
	id, key, ok := order.ParseWorkflowID(activity.GetInfo(ctx).WorkflowExecution.ID)
	if !ok {
		id, key = 0, ""
	}
	return orderbook.ActingFor(ctx, id, key)
}

// step adapts a service method that returns the order.
func step(o queries.Order, err error) (StepResult, error) {
	if err != nil {
		return StepResult{}, failure(err)
	}
	return resultOf(o), nil
}

// Validate checks the business rules and hands a valid order to matching in the same
// write: CREATED → VALIDATED → SENT_TO_EXECUTOR, or REJECTED with the reason. The run
// then goes straight to Execute; SendToExecutor is left for orders an earlier release
// left VALIDATED.
func (a *Activities) Validate(ctx context.Context, orderID int64) (StepResult, error) {
	return step(a.book.Validate(acting(ctx), orderID))
}

// SendToExecutor hands a validated order to matching: VALIDATED → SENT_TO_EXECUTOR.
func (a *Activities) SendToExecutor(ctx context.Context, orderID int64) (StepResult, error) {
	return step(a.book.Dispatch(acting(ctx), orderID))
}

// Cancel applies a cancel (CANCELLED, or PARTIALLY_CANCELLED after fills); an order that
// already ended is left as it is.
func (a *Activities) Cancel(ctx context.Context, in CancelInput) (StepResult, error) {
	return step(a.book.Cancel(acting(ctx), orderbook.CancelRequest{OrderID: in.OrderID, Reason: in.Reason, RequestedBy: in.RequestedBy}))
}

// Expire ends a DAY or GTD order that still rests at its expiry EXPIRED; an order that
// ended meanwhile, or whose expiry has not come (a clock ahead of the database's), is
// left as it is.
func (a *Activities) Expire(ctx context.Context, orderID int64) (StepResult, error) {
	return step(a.book.Expire(acting(ctx), orderID))
}

// Fail ends an order that cannot proceed as FAILED, and unparks it.
func (a *Activities) Fail(ctx context.Context, in FailInput) (StepResult, error) {
	return step(a.book.Fail(acting(ctx), orderbook.FailRequest{OrderID: in.OrderID, Reason: in.Reason, RequestedBy: in.RequestedBy}))
}

// MarkStalled parks an order whose step exhausted its retry budget.
func (a *Activities) MarkStalled(ctx context.Context, in StallInput) (StepResult, error) {
	return step(a.book.Park(acting(ctx), orderbook.ParkRequest{OrderID: in.OrderID, Step: in.Step, Error: in.Error, Attempts: in.Attempts}))
}

// Resume unparks an order for an operator's retry.
func (a *Activities) Resume(ctx context.Context, in ResumeInput) (StepResult, error) {
	return step(a.book.Resume(acting(ctx), orderbook.ResumeRequest{OrderID: in.OrderID, Step: in.Step, RequestedBy: in.RequestedBy}))
}

// Execute runs one step of matching (see orderbook.Service.Match), then tells the runs
// of the resting orders whose status the step that ended the sweep changed (a handful,
// for an ordinary order). Those it could not tell, and the fills of a deeper sweep, are
// sent by the worker's orderbook.Service.DeliverFillNotices, so a failed signal does not
// fail the step.
func (a *Activities) Execute(ctx context.Context, orderID int64) (ExecuteResult, error) {
	res, err := a.book.Match(acting(ctx), orderID)
	if err != nil {
		return ExecuteResult{}, failure(err)
	}
	out := ExecuteResult{StepResult: resultOf(res.Order), More: res.More}
	if a.notifier == nil {
		for _, n := range res.Notices {
			out.Counterparties = append(out.Counterparties, Counterparty{OrderID: n.OrderID, RunKey: n.RunKey, Status: n.Status})
		}
		return out, nil
	}
	if err := a.book.Deliver(ctx, a.notifier, res.Notices); err != nil {
		a.log.Warn("fill notices left to the worker's sender", "order_id", orderID, "error", err)
	}
	return out, nil
}

// AmendInput is a client's amendment of a resting order (see orderbook.AmendRequest).
// Price is the new limit ("" keeps it); IfVersion, when not nil, the version the client
// saw.
type AmendInput struct {
	OrderID     int64
	AmendID     string
	Quantity    int64
	Price       string
	IfVersion   *int64
	RequestedBy string
}

// AmendResult is what an amendment did (orderbook.AmendOutcome) and where the order
// stands; ReplacementID is the order that replaced it (AmendReplaced), else 0.
type AmendResult struct {
	StepResult
	Outcome       orderbook.AmendOutcome
	Detail        string
	Version       int64
	ReplacementID int64
}

// Amend applies a client's amendment to a resting order (orderbook.Service.Amend): in
// place for a smaller quantity, or by a replacement for a new price or a larger
// quantity. A refusal is a result, not an error, so it is not retried.
func (a *Activities) Amend(ctx context.Context, in AmendInput) (AmendResult, error) {
	req := orderbook.AmendRequest{OrderID: in.OrderID, AmendID: in.AmendID, Quantity: in.Quantity, IfVersion: in.IfVersion, RequestedBy: in.RequestedBy}
	if in.Price != "" {
		p, err := decimal.NewFromString(in.Price)
		if err != nil {
			return AmendResult{}, temporal.NewNonRetryableApplicationError("amend price: "+err.Error(), ErrTypeInvalidAmendment, err)
		}
		req.Price = decimal.NewNullDecimal(p)
	}
	res, err := a.book.Amend(acting(ctx), req)
	if err != nil {
		return AmendResult{}, failure(err)
	}
	out := AmendResult{StepResult: resultOf(res.Order), Outcome: res.Outcome, Detail: res.Detail, Version: res.Order.Version}
	if res.Replacement != nil {
		out.ReplacementID = res.Replacement.ID
	}
	return out, nil
}
