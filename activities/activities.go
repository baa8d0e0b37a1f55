// Package activities holds OrderFlow's Temporal activities. Each one is a single short
// PostgreSQL transaction through the sqlc queries, and each is idempotent: it first reads
// the order, and when the order is already past the step (a retry after a commit whose
// reply was lost, or a replayed Kafka message) it changes nothing and reports where the
// order stands.
package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Error types that workflows' retry policies treat as permanent.
const (
	ErrTypeUnknownOrder      = "UnknownOrder"
	ErrTypeInvalidTransition = "InvalidTransition"
	// ErrTypeStaleVersion marks an optimistic-lock conflict: retryable, and retried.
	ErrTypeStaleVersion = "StaleVersion"
)

// ErrStale means another transaction changed the order since it was read; the activity
// fails with it so that Temporal retries it against the fresh row.
var ErrStale = errors.New("order changed concurrently (stale version)")

// Activities are the lifecycle steps, sharing one connection pool.
type Activities struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	observer TransitionObserver
	notifier FillNotifier // nil: the workflow signals the counterparties itself
}

// FillNotifier tells a resting order's run that a trade left the order in status; a
// run that does not exist is not an error. (The workflows package's Starter is one.)
type FillNotifier interface {
	NotifyFill(ctx context.Context, orderID int64, status order.Status) error
}

// TransitionObserver learns of every committed status change (for metrics).
type TransitionObserver interface {
	ObserveTransition(from, to string)
}

// New returns the activities over pool. observer may be nil. With a notifier, Execute
// tells the runs of the resting orders it traded with about their fills; without one
// (nil), it only reports them. (Every exported method of Activities is registered as an
// activity, hence no setters.)
func New(pool *pgxpool.Pool, logger *slog.Logger, observer TransitionObserver, notifier FillNotifier) *Activities {
	return &Activities{pool: pool, log: logger, observer: observer, notifier: notifier}
}

// txn is one activity's transaction: its queries, and the status changes it made, which
// are reported only once the transaction has committed.
type txn struct {
	*queries.Queries
	changes [][2]order.Status
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
// that trade left it in, so that order's run can be told about its fill. Only fills that
// changed the resting order's status are listed (a further partial fill of a PARTIALLY_FILLED
// order changes nothing its run acts on), except after a retry, which lists them all.
type Counterparty struct {
	OrderID int64
	Status  order.Status
}

// ExecuteResult is where an order stands after matching, and whom it traded with.
type ExecuteResult struct {
	StepResult
	Counterparties []Counterparty
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

// inTx runs fn in one transaction, reading the order first. fn returns the order as it
// left it; a read-only fn returns the order unchanged and the commit is a no-op.
func (a *Activities) inTx(ctx context.Context, orderID int64, fn func(q *txn, o queries.Order) (queries.Order, error)) (queries.Order, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return queries.Order{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	q := &txn{Queries: queries.New(tx)}
	o, err := q.GetOrder(ctx, orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Order{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("order %d does not exist", orderID), ErrTypeUnknownOrder, err)
	}
	if err != nil {
		return queries.Order{}, fmt.Errorf("get order %d: %w", orderID, err)
	}
	if o, err = fn(q, o); err != nil {
		return queries.Order{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return queries.Order{}, fmt.Errorf("commit: %w", err)
	}
	if a.observer != nil {
		for _, c := range q.changes {
			a.observer.ObserveTransition(string(c[0]), string(c[1]))
		}
	}
	return o, nil
}

// Validate checks the business rules (instrument known and active, tick size, lot size,
// quantity range): CREATED → VALIDATED, or REJECTED with the reason.
func (a *Activities) Validate(ctx context.Context, orderID int64) (StepResult, error) {
	o, err := a.inTx(ctx, orderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if order.Status(o.Status) != order.Created {
			return o, nil
		}
		reason, err := rejection(ctx, q, o)
		if err != nil {
			return o, err
		}
		if reason != "" {
			return transition(ctx, q, o, change{to: order.Rejected, reason: reason})
		}
		return transition(ctx, q, o, change{to: order.Validated})
	})
	return resultOf(o), err
}

func rejection(ctx context.Context, q *txn, o queries.Order) (string, error) {
	inst, err := q.GetInstrument(ctx, o.InstrumentID)
	if errors.Is(err, pgx.ErrNoRows) {
		return order.ReasonUnknownInstrument, nil
	}
	if err != nil {
		return "", fmt.Errorf("get instrument %d: %w", o.InstrumentID, err)
	}
	rules := order.Instrument{
		ID: inst.ID, Symbol: inst.Symbol, TickSize: inst.TickSize, LotSize: inst.LotSize,
		MinQty: inst.MinQuantity, MaxQty: inst.MaxQuantity, Active: inst.Status == "ACTIVE",
	}
	return rules.Rejection(order.Kind(o.Kind), o.Price.Decimal, o.Quantity), nil
}

// SendToExecutor hands a validated order to the matching engine: VALIDATED → SENT_TO_EXECUTOR.
func (a *Activities) SendToExecutor(ctx context.Context, orderID int64) (StepResult, error) {
	o, err := a.inTx(ctx, orderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if order.Status(o.Status) != order.Validated {
			return o, nil
		}
		return transition(ctx, q, o, change{to: order.SentToExecutor})
	})
	return resultOf(o), err
}

// Cancel cancels what is left of an order: CANCELLED if nothing was filled, else
// PARTIALLY_CANCELLED. An order that is already terminal (a fill won the race) is left
// as it is, and its status is the truthful answer.
func (a *Activities) Cancel(ctx context.Context, in CancelInput) (StepResult, error) {
	o, err := a.inTx(ctx, in.OrderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if order.Status(o.Status).Terminal() {
			return o, nil
		}
		// Cancels go through the book lock like matching does, so a cancel never
		// interleaves with a match of the same order.
		if _, err := q.LockBook(ctx, o.InstrumentID); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return o, fmt.Errorf("lock book %d: %w", o.InstrumentID, err)
		}
		o, err := q.GetOrderForUpdate(ctx, o.ID)
		if err != nil {
			return o, fmt.Errorf("get order %d: %w", in.OrderID, err)
		}
		to := order.Cancelled
		switch st := order.Status(o.Status); {
		case st.Terminal():
			return o, nil
		case st == order.PartiallyFilled:
			to = order.PartiallyCancelled
		}
		reason := in.Reason
		if reason == "" {
			reason = order.ReasonCancelledByClient
		}
		return transition(ctx, q, o, change{to: to, reason: reason, details: map[string]any{"requestedBy": in.RequestedBy}})
	})
	return resultOf(o), err
}

// Fail ends an order that cannot proceed (a permanent error, or an operator's decision
// on a parked order) as FAILED, and unparks it.
func (a *Activities) Fail(ctx context.Context, in FailInput) (StepResult, error) {
	o, err := a.inTx(ctx, in.OrderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if !order.CanTransition(order.Status(o.Status), order.Failed) {
			return o, nil
		}
		if o.NeedsAttention {
			if _, err := q.ClearStalled(ctx, o.ID); err != nil {
				return o, fmt.Errorf("unpark order %d: %w", o.ID, err)
			}
		}
		details := map[string]any{}
		if in.RequestedBy != "" {
			details["requestedBy"] = in.RequestedBy
		}
		return transition(ctx, q, o, change{to: order.Failed, reason: in.Reason, details: details})
	})
	return resultOf(o), err
}

// MarkStalled parks an order whose step exhausted its retry budget: it sets the order's
// needs-attention flag and last error and appends EXECUTION_STALLED, leaving the status
// as it is. A retry after a lost reply finds the order parked for the step and does
// nothing.
func (a *Activities) MarkStalled(ctx context.Context, in StallInput) (StepResult, error) {
	o, err := a.inTx(ctx, in.OrderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if o.NeedsAttention && o.StalledStep == in.Step {
			return o, nil
		}
		o, err := q.MarkStalled(ctx, queries.MarkStalledParams{ID: o.ID, LastError: in.Error, StalledStep: in.Step})
		if err != nil {
			return o, fmt.Errorf("park order %d: %w", in.OrderID, err)
		}
		return o, annotate(ctx, q, o, order.EventExecutionStalled, map[string]any{
			"step": in.Step, "error": in.Error, "attempts": in.Attempts,
		})
	})
	return resultOf(o), err
}

// Resume unparks an order for an operator's retry and appends OPERATOR_RETRY; an order
// that is not parked (a retry after a lost reply) is left as it is.
func (a *Activities) Resume(ctx context.Context, in ResumeInput) (StepResult, error) {
	o, err := a.inTx(ctx, in.OrderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if !o.NeedsAttention {
			return o, nil
		}
		o, err := q.ClearStalled(ctx, o.ID)
		if err != nil {
			return o, fmt.Errorf("unpark order %d: %w", in.OrderID, err)
		}
		return o, annotate(ctx, q, o, order.EventOperatorRetry, map[string]any{
			"step": in.Step, "requestedBy": in.RequestedBy,
		})
	})
	return resultOf(o), err
}

// bookPage is how many resting orders one query of the book loads.
const bookPage = 200

// Execute matches an order against its instrument's book: SENT_TO_EXECUTOR → EXECUTING,
// then one change per fill for it and for each resting order it trades with, then its
// final status (resting, executed, or its remainder cancelled). All in one transaction
// holding the instrument's book lock.
func (a *Activities) Execute(ctx context.Context, orderID int64) (ExecuteResult, error) {
	var counterparties []Counterparty
	o, err := a.inTx(ctx, orderID, func(q *txn, o queries.Order) (queries.Order, error) {
		if order.Status(o.Status) != order.SentToExecutor {
			// Already matched (a retry after a lost reply): report the same counterparties.
			rows, err := q.ListTakenCounterparties(ctx, o.ID)
			if err != nil {
				return o, fmt.Errorf("list counterparties: %w", err)
			}
			for _, r := range rows {
				counterparties = append(counterparties, Counterparty{OrderID: r.ID, Status: order.Status(r.Status)})
			}
			return o, nil
		}
		if _, err := q.LockBook(ctx, o.InstrumentID); err != nil {
			return o, fmt.Errorf("lock book %d: %w", o.InstrumentID, err)
		}
		// Re-read under the book lock: a cancel may have committed while we waited for it.
		o, err := q.GetOrderForUpdate(ctx, o.ID)
		if err != nil {
			return o, fmt.Errorf("get order %d: %w", orderID, err)
		}
		if order.Status(o.Status) != order.SentToExecutor {
			return o, nil
		}
		o, err = transition(ctx, q, o, change{to: order.Executing})
		if err != nil {
			return o, err
		}
		book, err := loadBook(ctx, q, o)
		if err != nil {
			return o, err
		}
		in := order.Incoming{
			ID: o.ID, UserID: o.UserID, Side: order.Side(o.Side), Kind: order.Kind(o.Kind),
			Price: o.Price.Decimal, Remaining: o.RemainingQuantity, TimeInForce: order.TimeInForce(o.TimeInForce),
		}
		resting := make([]order.Resting, len(book))
		byID := make(map[int64]queries.Order, len(book))
		for i, r := range book {
			resting[i] = order.Resting{ID: r.ID, UserID: r.UserID, Price: r.Price.Decimal, Remaining: r.RemainingQuantity, Seq: r.ID}
			byID[r.ID] = r
		}
		outcome := order.Match(in, resting)
		for _, f := range outcome.Fills {
			var cp Counterparty
			if o, cp, err = applyFill(ctx, q, o, byID[f.RestingID], f); err != nil {
				return o, err
			}
			if cp.Status != order.Status(byID[f.RestingID].Status) {
				counterparties = append(counterparties, cp)
			}
		}
		if order.Status(o.Status) != outcome.Status {
			return transition(ctx, q, o, change{to: outcome.Status, reason: outcome.Reason})
		}
		return o, nil
	})
	if err != nil {
		return ExecuteResult{}, err
	}
	if err := a.notify(ctx, counterparties); err != nil {
		// The match is committed; the retry is a no-op that lists the same counterparties
		// and notifies them again.
		return ExecuteResult{}, err
	}
	return ExecuteResult{StepResult: resultOf(o), Counterparties: counterparties}, nil
}

// notify tells the counterparties' runs about their fills, concurrently; from here rather
// than from the workflow, the aggressor's run needs no second workflow task to learn that
// its signals were delivered.
func (a *Activities) notify(ctx context.Context, cps []Counterparty) error {
	if a.notifier == nil || len(cps) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, cp := range cps {
		g.Go(func() error { return a.notifier.NotifyFill(gctx, cp.OrderID, cp.Status) })
	}
	return g.Wait()
}

// loadBook loads the opposite side of o's book, page by page, until it holds enough
// quantity to fill o or the acceptable prices run out.
func loadBook(ctx context.Context, q *txn, o queries.Order) ([]queries.Order, error) {
	var limit decimal.NullDecimal // NULL: a market order takes any price
	if o.Kind == string(order.Limit) {
		limit = o.Price
	}
	var book []queries.Order
	var depth int64
	for offset := int32(0); ; offset += bookPage {
		page, err := q.ListRestingOrders(ctx, queries.ListRestingOrdersParams{
			InstrumentID: o.InstrumentID,
			Side:         string(order.Side(o.Side).Opposite()),
			LimitPrice:   limit,
			PageSize:     bookPage,
			PageOffset:   offset,
		})
		if err != nil {
			return nil, fmt.Errorf("load book: %w", err)
		}
		book = append(book, page...)
		for _, r := range page {
			depth += r.RemainingQuantity
		}
		if len(page) < bookPage || depth >= o.RemainingQuantity {
			return book, nil
		}
	}
}

// applyFill records one trade between the incoming order and a resting one, and moves
// both through their fill transitions.
func applyFill(ctx context.Context, q *txn, in, resting queries.Order, f order.Fill) (queries.Order, Counterparty, error) {
	buy, sell := in.ID, resting.ID
	if in.Side == string(order.Sell) {
		buy, sell = sell, buy
	}
	trade, err := q.InsertTrade(ctx, queries.InsertTradeParams{
		InstrumentID: in.InstrumentID, BuyOrderID: buy, SellOrderID: sell,
		AggressorSide: in.Side, Price: f.Price, Quantity: f.Quantity,
	})
	if err != nil {
		return in, Counterparty{}, fmt.Errorf("insert trade: %w", err)
	}
	fill := func(o queries.Order, counterparty int64) (queries.Order, error) {
		remaining := o.RemainingQuantity - f.Quantity
		to := order.PartiallyFilled
		if remaining == 0 {
			to = order.Executed
		}
		return transition(ctx, q, o, change{to: to, remaining: &remaining, details: map[string]any{
			"tradeId": trade.ID, "fillQuantity": f.Quantity, "fillPrice": f.Price.String(), "counterpartyOrderId": counterparty,
		}})
	}
	r, err := fill(resting, in.ID)
	if err != nil {
		return in, Counterparty{}, err
	}
	in, err = fill(in, resting.ID)
	return in, Counterparty{OrderID: r.ID, Status: order.Status(r.Status)}, err
}
