// Package workflows holds OrderFlow's Temporal workflow: orchestration only, with no I/O,
// no wall clock and no goroutines of its own, so that every run replays deterministically.
// All reads and writes happen in the activities package.
package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
)

// TaskQueue is the task queue OrderWorkflow and its activities run on.
const TaskQueue = "orderflow-orders"

// Signal names.
const (
	// SignalCancel asks an order's run to cancel it at the next safe point.
	SignalCancel = "cancel"
	// SignalFill tells a resting order's run that another order traded with it.
	SignalFill = "fill"
)

// QueryStatus answers with the status the run last saw.
const QueryStatus = "status"

// OrderWorkflowID is the one place that builds an order's workflow id.
func OrderWorkflowID(orderID int64) string { return fmt.Sprintf("order-%d", orderID) }

// OrderInput starts an order's run.
type OrderInput struct {
	OrderID int64
}

// OrderResult is how the order's run ended.
type OrderResult struct {
	OrderID int64
	Status  order.Status
	Reason  string
}

// CancelSignal is SignalCancel's payload.
type CancelSignal struct {
	RequestedBy string
}

// FillSignal is SignalFill's payload: the status the trade left the resting order in.
type FillSignal struct {
	Status order.Status
}

// maxSignalsPerRun bounds a long-resting order's history: after that many fill signals
// the run continues as new, carrying nothing but the order id (PostgreSQL has the rest).
const maxSignalsPerRun = 500

// activityOptions: every step is one short transaction, so a short StartToClose bounds a
// stuck connection; transient failures (database unavailable, optimistic-lock conflicts)
// are retried with exponential backoff without limit, while business outcomes are
// results, not errors, and the only permanent errors are the non-retryable types below.
func activityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        100 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrTypeUnknownOrder, activities.ErrTypeInvalidTransition},
		},
	}
}

// OrderWorkflow drives one order through its lifecycle. It is a loop over the order's
// status, so a run started for an order that is already part-way (a Kafka message
// replayed after the run was forgotten, or a continue-as-new) resumes where PostgreSQL
// says the order stands: each activity is a no-op for an order past its step.
func OrderWorkflow(ctx workflow.Context, in OrderInput) (OrderResult, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions())
	log := workflow.GetLogger(ctx)
	var a *activities.Activities

	res := OrderResult{OrderID: in.OrderID, Status: order.Created}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (order.Status, error) { return res.Status, nil }); err != nil {
		return res, err
	}
	cancelCh := workflow.GetSignalChannel(ctx, SignalCancel)
	fillCh := workflow.GetSignalChannel(ctx, SignalFill)
	var cancel *CancelSignal
	takeCancel := func() {
		var s CancelSignal
		for cancelCh.ReceiveAsync(&s) {
			cancel = &s
		}
	}
	signals := 0

	for !res.Status.Terminal() {
		takeCancel()
		var step activities.StepResult
		var err error
		switch {
		case cancel != nil:
			err = workflow.ExecuteActivity(ctx, a.Cancel, activities.CancelInput{OrderID: in.OrderID, RequestedBy: cancel.RequestedBy}).Get(ctx, &step)
			cancel = nil
		case res.Status == order.Created:
			err = workflow.ExecuteActivity(ctx, a.Validate, in.OrderID).Get(ctx, &step)
		case res.Status == order.Validated:
			err = workflow.ExecuteActivity(ctx, a.SendToExecutor, in.OrderID).Get(ctx, &step)
		case res.Status == order.SentToExecutor:
			var ex activities.ExecuteResult
			err = workflow.ExecuteActivity(ctx, a.Execute, in.OrderID).Get(ctx, &ex)
			step = ex.StepResult
			if err == nil {
				notifyCounterparties(ctx, ex.Counterparties)
			}
		default: // resting on the book: wait for a fill or a cancel
			if signals >= maxSignalsPerRun && fillCh.Len() == 0 && cancelCh.Len() == 0 {
				return res, workflow.NewContinueAsNewError(ctx, OrderWorkflow, in)
			}
			var fill FillSignal
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(cancelCh, func(c workflow.ReceiveChannel, _ bool) {
				var s CancelSignal
				c.Receive(ctx, &s)
				cancel = &s
			})
			sel.AddReceive(fillCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &fill) })
			sel.Select(ctx)
			signals++
			if fill.Status != "" {
				res.Status = fill.Status
			}
			continue
		}
		if err != nil {
			return fail(ctx, a, res, err)
		}
		log.Debug("order step done", "order_id", in.OrderID, "status", step.Status)
		res.Status, res.Reason = step.Status, step.Reason
	}
	return res, nil
}

// notifyCounterparties tells the runs of the resting orders an execution traded with
// about their fills. A missing run is logged, not fatal: the trade is committed and the
// order's row is the truth; the run finds it when it next reads.
func notifyCounterparties(ctx workflow.Context, cps []activities.Counterparty) {
	futures := make([]workflow.Future, len(cps))
	for i, cp := range cps {
		futures[i] = workflow.SignalExternalWorkflow(ctx, OrderWorkflowID(cp.OrderID), "", SignalFill, FillSignal{Status: cp.Status})
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("fill signal not delivered", "order_id", cps[i].OrderID, "error", err)
		}
	}
}

// fail ends the order as FAILED after a permanent activity error, so that no order is
// left non-terminal without a run.
func fail(ctx workflow.Context, a *activities.Activities, res OrderResult, cause error) (OrderResult, error) {
	workflow.GetLogger(ctx).Error("order step failed permanently", "order_id", res.OrderID, "error", cause)
	var step activities.StepResult
	if err := workflow.ExecuteActivity(ctx, a.Fail, activities.FailInput{OrderID: res.OrderID, Reason: cause.Error()}).Get(ctx, &step); err != nil {
		return res, err
	}
	res.Status, res.Reason = step.Status, step.Reason
	return res, nil
}
