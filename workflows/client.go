package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
)

// Search attributes the order's run carries, so operators can filter runs in the
// Temporal UI. SearchAttributeTypes lists them with their types for registration.
var (
	AttrOrderID        = temporal.NewSearchAttributeKeyInt64("OrderId")
	AttrUserID         = temporal.NewSearchAttributeKeyInt64("UserId")
	AttrInstrumentID   = temporal.NewSearchAttributeKeyInt64("InstrumentId")
	AttrOrderStatus    = temporal.NewSearchAttributeKeyKeyword("OrderStatus")
	AttrOrderKind      = temporal.NewSearchAttributeKeyKeyword("OrderKind")
	AttrOrderSide      = temporal.NewSearchAttributeKeyKeyword("OrderSide")
	AttrNeedsAttention = temporal.NewSearchAttributeKeyBool("NeedsAttention")
)

// SearchAttributeTypes maps each custom search attribute to the type name the Temporal
// CLI's --search-attribute flag and `temporal operator search-attribute create` take.
func SearchAttributeTypes() map[string]string {
	return map[string]string{
		"OrderId": "Int", "UserId": "Int", "InstrumentId": "Int",
		"OrderStatus": "Keyword", "OrderKind": "Keyword", "OrderSide": "Keyword",
		"NeedsAttention": "Bool",
	}
}

// StartRequest describes the order whose run to start; the fields beyond OrderID become
// the run's search attributes.
type StartRequest struct {
	OrderID      int64
	RunKey       string
	UserID       int64
	InstrumentID int64
	Side         string
	Kind         string
}

func startOptions(r StartRequest) client.StartWorkflowOptions {
	summary := fmt.Sprintf("order %d", r.OrderID)
	if r.UserID != 0 {
		summary = fmt.Sprintf("order %d: %s %s on instrument %d for user %d", r.OrderID, r.Side, r.Kind, r.InstrumentID, r.UserID)
	}
	return client.StartWorkflowOptions{
		StaticSummary: summary,
		ID:            OrderWorkflowID(r.OrderID, r.RunKey),
		TaskQueue:     TaskQueue,
		// One run at a time per order: a redelivered message finds the running run, or
		// the run that completed, and starts nothing. A run that was terminated, failed,
		// timed out or was cancelled left its order's fate unknown, so its id may be
		// started again (see also restartOptions).
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    StartSearchAttributes(r),
	}
}

// restartOptions are startOptions for a start made because the order is open and needs
// a run: its last run's id may be started again however that run closed. One that
// completed can leave its order open only if the database is not the one the run saw
// (a restore); a new run reads where PostgreSQL says the order stands, and one started
// for an order that has ended ends at once, having changed nothing.
func restartOptions(r StartRequest) client.StartWorkflowOptions {
	opts := startOptions(r)
	opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	return opts
}

// StartSearchAttributes are the search attributes an order's run starts with.
func StartSearchAttributes(r StartRequest) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{AttrOrderID.ValueSet(r.OrderID)}
	if r.UserID != 0 {
		updates = append(updates, AttrUserID.ValueSet(r.UserID), AttrInstrumentID.ValueSet(r.InstrumentID),
			AttrOrderSide.ValueSet(r.Side), AttrOrderKind.ValueSet(r.Kind))
	}
	return temporal.NewSearchAttributes(updates...)
}

// Starter starts and signals order runs.
type Starter struct {
	client client.Client
	retry  RetryConfig
}

// NewStarter returns a Starter over c whose runs retry their steps with retry.
func NewStarter(c client.Client, retry RetryConfig) *Starter {
	return &Starter{client: c, retry: retry.orDefault()}
}

func (s *Starter) input(orderID int64) OrderInput {
	return OrderInput{OrderID: orderID, Retry: s.retry, Revision: CurrentRevision}
}

// Start starts the order's run. A run of the order that is running already is success:
// started reports whether this call made one.
func (s *Starter) Start(ctx context.Context, r StartRequest) (started bool, err error) {
	return s.start(ctx, startOptions(r), r.OrderID)
}

// Restart starts a run for an order that is open and needs one (the reconciler's case):
// like Start, but a closed run of the order does not stop it, however it closed.
func (s *Starter) Restart(ctx context.Context, r StartRequest) (started bool, err error) {
	return s.start(ctx, restartOptions(r), r.OrderID)
}

// RestartCancelled starts a run for an open order whose last run was cancelled (from the
// Temporal UI or CLI) without managing to cancel it: the new run applies the cancel the
// operator meant, with reason RUN_CANCELLED. A run that is running gets the cancel.
func (s *Starter) RestartCancelled(ctx context.Context, r StartRequest) error {
	_, err := s.cancelWithStart(ctx, r, CancelSignal{RequestedBy: "temporal", Reason: order.ReasonRunCancelled})
	return err
}

// cancelWithStart sends sig to the order's running run, or starts a run with it: the
// order is open, and its last run, if any, has closed however it did (restartOptions).
func (s *Starter) cancelWithStart(ctx context.Context, r StartRequest, sig CancelSignal) (client.WorkflowRun, error) {
	opts := restartOptions(r)
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING
	opts.WorkflowExecutionErrorWhenAlreadyStarted = false
	run, err := s.client.SignalWithStartWorkflow(ctx, opts.ID, SignalCancel, sig, opts, OrderWorkflow, s.input(r.OrderID))
	if err != nil {
		return nil, fmt.Errorf("signal cancel to %s: %w", opts.ID, err)
	}
	return run, nil
}

// EndStray sends a cancel to a running run that belongs to no order (its id and key are
// no order's, after a restore): its Cancel step finds the order is not its own, and the
// run ends FOREIGN_RUN or UNKNOWN_ORDER, having changed nothing. A run that is gone is
// not an error.
func (s *Starter) EndStray(ctx context.Context, wid string) error {
	err := s.signal(ctx, wid, SignalCancel, CancelSignal{RequestedBy: "reconcile"})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

func (s *Starter) start(ctx context.Context, opts client.StartWorkflowOptions, orderID int64) (started bool, err error) {
	// When this client's process also runs a worker on the task queue (the worker role),
	// the server hands the first workflow task straight back in the start response,
	// saving a poll round trip per order.
	opts.EnableEagerStart = true
	_, err = s.client.ExecuteWorkflow(ctx, opts, OrderWorkflow, s.input(orderID))
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &already):
		return false, nil
	case refused(err):
		return false, fmt.Errorf("start %s: %w: %w", opts.ID, ErrStartRefused, err)
	case err != nil:
		return false, fmt.Errorf("start %s: %w", opts.ID, err)
	}
	return true, nil
}

// ErrStartRefused wraps a start error that trying again cannot fix: the namespace does
// not exist, a search attribute is not registered, the input is too large, the caller
// may not start runs. Anything else (the server unavailable, a deadline) is transient.
var ErrStartRefused = errors.New("the Temporal server refused to start the run")

// refused reports whether err is a start error that no retry can fix.
func refused(err error) bool {
	var (
		namespace  *serviceerror.NamespaceNotFound
		invalid    *serviceerror.InvalidArgument
		permission *serviceerror.PermissionDenied
	)
	return errors.As(err, &namespace) || errors.As(err, &invalid) || errors.As(err, &permission)
}

// RequestCancel signals the order's run to cancel, starting a run if there is none
// running (signal-with-start: the Kafka message has not started it yet, so an early
// cancel still wins; or its last run was terminated or failed, so the cancel gets the
// order a run that applies it), and waits up to wait for the run to end. applied is true
// when it ended in that time; the order's row says how (a fill may have won the race).
// Call it only for an order that is open: a run it starts for an ended order ends at once.
// requestedBy names who asked, for the order's timeline.
func (s *Starter) RequestCancel(ctx context.Context, orderID int64, runKey, requestedBy string, wait time.Duration) (applied bool, err error) {
	run, err := s.cancelWithStart(ctx, StartRequest{OrderID: orderID, RunKey: runKey}, CancelSignal{RequestedBy: requestedBy})
	if err != nil {
		return false, err
	}
	ended, err := awaitEnd(ctx, run, wait)
	if err != nil {
		return false, fmt.Errorf("wait for %s: %w", run.GetID(), err)
	}
	return ended, nil // not ended: still running, the cancel accepted but not yet applied
}

// awaitEnd waits up to wait for run to end; ended is false when it had not.
//
// The wait is a timer of our own, not a deadline on the long poll: the server answers a
// long poll whose deadline is less than a second away at once, and the SDK polls again,
// so a deadline of wait turned the wait's last second into a loop of history reads
// (hundreds per call). Without a deadline the server holds the poll until the run ends,
// and the timer cancels it.
func awaitEnd(ctx context.Context, run client.WorkflowRun, wait time.Duration) (ended bool, err error) {
	pollCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run.Get(pollCtx, nil) }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		return err == nil, err
	case <-timer.C:
		stop()
		<-done
		return false, nil
	case <-ctx.Done():
		stop()
		<-done
		return false, ctx.Err()
	}
}

// Retry tells a parked order's run to retry the step that stalled, and waits up to wait
// for the run to have resumed it: applied is false if it is still being applied (the
// database is down, say). A run that is not parked, or not running, refuses: the error
// wraps orderbook.ErrNotParked, and nothing is kept for later.
func (s *Starter) Retry(ctx context.Context, orderID int64, runKey, requestedBy string, wait time.Duration) (applied bool, err error) {
	return s.decide(ctx, OrderWorkflowID(orderID, runKey), UpdateRetry, RetrySignal{RequestedBy: requestedBy}, wait)
}

// Fail tells a parked order's run to end the order FAILED with reason, as Retry does.
func (s *Starter) Fail(ctx context.Context, orderID int64, runKey, reason, requestedBy string, wait time.Duration) (applied bool, err error) {
	return s.decide(ctx, OrderWorkflowID(orderID, runKey), UpdateFail, FailSignal{Reason: reason, RequestedBy: requestedBy}, wait)
}

// decide sends an operator's decision as an Update, which the run validates (refusing it
// unless parked), and waits up to wait for the run to have applied it.
func (s *Starter) decide(ctx context.Context, wid, name string, arg any, wait time.Duration) (applied bool, err error) {
	h, err := s.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: wid, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err == nil {
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		var res DecisionResult
		if err = h.Get(waitCtx, &res); err != nil && waitCtx.Err() != nil && ctx.Err() == nil {
			return false, nil // accepted; the run is still applying it
		}
	}
	var (
		appErr   *temporal.ApplicationError
		notFound *serviceerror.NotFound
	)
	switch {
	case errors.As(err, &appErr) && appErr.Type() == ErrTypeNotParked:
		return false, fmt.Errorf("%s: %s: %w", wid, appErr.Message(), orderbook.ErrNotParked)
	case errors.As(err, &notFound):
		return false, fmt.Errorf("%s has no running run: %w", wid, orderbook.ErrNotParked)
	case err != nil:
		return false, fmt.Errorf("%s to %s: %w", name, wid, err)
	}
	return true, nil
}

// NotifyFill tells a resting order's run that a trade left the order in status. A run
// that does not exist is not an error: the trade is committed, the order's row is the
// truth, and a run started later reads it.
func (s *Starter) NotifyFill(ctx context.Context, orderID int64, runKey string, status order.Status) error {
	err := s.signal(ctx, OrderWorkflowID(orderID, runKey), SignalFill, FillSignal{Status: status})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

func (s *Starter) signal(ctx context.Context, wid, name string, arg any) error {
	if err := s.client.SignalWorkflow(ctx, wid, "", name, arg); err != nil {
		return fmt.Errorf("signal %s to %s: %w", name, wid, err)
	}
	return nil
}

// Amend sends a client's amendment to the order's run (UpdateAmend; req.AmendID is
// ignored, the Update's id names it) and waits up to wait for the run to have applied or
// refused it: applied is false if it is still being applied (accepted by the run, which
// records it in the timeline), or if the run ended without answering. A run that refuses the Update gives an error wrapping
// orderbook.ErrNotAmendable; one that is not running, an error wrapping
// orderbook.ErrNotFound.
func (s *Starter) Amend(ctx context.Context, runKey string, req orderbook.AmendRequest, wait time.Duration) (res orderbook.Amended, applied bool, err error) {
	wid := OrderWorkflowID(req.OrderID, runKey)
	arg := AmendRequest{Quantity: req.Quantity, IfVersion: req.IfVersion, RequestedBy: req.RequestedBy}
	if req.Price.Valid {
		arg.Price = req.Price.Decimal.String()
	}
	h, err := s.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: wid, UpdateName: UpdateAmend, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err == nil {
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		var out activities.AmendResult
		err = h.Get(waitCtx, &out)
		var appErr *temporal.ApplicationError
		if err != nil && !(errors.As(err, &appErr) && appErr.Type() == ErrTypeNotAmendable) {
			// Accepted by the run, which is still applying it, or was ended (terminated)
			// before it answered: its timeline tells whether it was applied.
			return res, false, nil
		}
		res = orderbook.Amended{Outcome: out.Outcome, Detail: out.Detail, ReplacementID: out.ReplacementID}
	}
	var (
		appErr   *temporal.ApplicationError
		notFound *serviceerror.NotFound
	)
	switch {
	case errors.As(err, &appErr) && appErr.Type() == ErrTypeNotAmendable:
		return res, false, fmt.Errorf("%s: %s: %w", wid, appErr.Message(), orderbook.ErrNotAmendable)
	case errors.As(err, &notFound):
		return res, false, fmt.Errorf("%s has no running run: %w", wid, orderbook.ErrNotFound)
	case err != nil:
		return res, false, fmt.Errorf("%s to %s: %w", UpdateAmend, wid, err)
	}
	return res, true, nil
}
