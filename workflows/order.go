// Package workflows holds OrderFlow's Temporal workflow: orchestration only, with no I/O,
// no wall clock and no goroutines of its own, so that every run replays deterministically.
// All reads and writes happen in the activities package.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
)

// TaskQueue is the task queue OrderWorkflow and its activities run on.
const TaskQueue = "orderflow-orders"

// Signal names. Operators can send SignalRetry and SignalFail from the Temporal UI too.
const (
	// SignalCancel asks an order's run to cancel it at the next safe point.
	SignalCancel = "cancel"
	// SignalFill tells a resting order's run that another order traded with it.
	SignalFill = "fill"
	// SignalRetry tells a parked run to retry the step that exhausted its retries.
	SignalRetry = "retry"
	// SignalFail tells a parked run to give up: the order ends FAILED with the reason.
	SignalFail = "fail"
)

// Update names: an operator's decision about a parked run. The run's validator refuses
// one while the run is not parked, so a decision is applied at once or not at all, and
// the Update is answered once it has been applied (DecisionResult). SignalRetry and
// SignalFail remain for the Temporal UI and older tools; one that arrives while the run
// is not parked is dropped when the run parks (changeDropStaleDecisions).
const (
	UpdateRetry = "retry-parked"
	UpdateFail  = "fail-parked"
)

// ErrTypeNotParked is the type of the error an operator's Update is refused with when
// the run is not parked.
const ErrTypeNotParked = "NotParked"

// DecisionResult answers an operator's Update: where the order stands once the decision
// was applied (retry: the parked step resumes from this status; fail: FAILED).
type DecisionResult struct {
	Status order.Status
	Step   string
}

// UpdateAmend is a client's amendment of the resting order (AmendRequest), which the run
// applies between fills, and answers (activities.AmendResult) once applied or refused. Its
// validator refuses it (ErrTypeNotAmendable) unless the run rests on the book with no
// other amendment or decision in progress.
const UpdateAmend = "amend"

// ErrTypeNotAmendable is the type of the error an amendment is refused with before it
// reaches the order: the run is not resting, or is busy with another amendment.
const ErrTypeNotAmendable = "NotAmendable"

// ErrTypeAmendUncertain is the type of the error an amendment is answered with when its
// step failed (parked and failed by an operator, the run cancelled): it may have been
// applied by an attempt whose answer was lost.
const ErrTypeAmendUncertain = "AmendUncertain"

// AmendRequest is UpdateAmend's argument: the order's new total quantity (0 keeps it)
// and limit price ("" keeps it), the version the client saw (If-Match; nil: any), and who
// asked. The Update's id names the amendment, so a retried step applies it once.
type AmendRequest struct {
	Quantity    int64
	Price       string
	IfVersion   *int64
	RequestedBy string
}

// QueryStatus answers with the status the run last saw.
const QueryStatus = "status"

// OrderWorkflowID is the workflow id of the order with orderID and runKey (see
// order.WorkflowID): order-<id>-<key>, or order-<id> for orders placed before run keys.
func OrderWorkflowID(orderID int64, runKey string) string { return order.WorkflowID(orderID, runKey) }

// OrderInput starts an order's run.
type OrderInput struct {
	OrderID int64
	// Retry is the activities' retry policy; zero fields take DefaultRetry's.
	Retry RetryConfig
	// Revision is the behaviour the run follows (see CurrentRevision); zero for runs
	// started before revisions existed.
	Revision int
}

// Revisions of OrderWorkflow's behaviour, as the input of the run says. They are closed:
// CurrentRevision is the last there will be. A revision chosen by whoever starts the run
// (the API's signal-with-start, the consumer) is not a safe way to change behaviour: in
// a rolling deploy an old worker handed a run of a newer revision would run it as its
// own latest and record commands the new code does not make. Every change since is a
// workflow.GetVersion change, decided by the code that runs the workflow task and
// recorded in the history (RUNBOOK.md, "Deploying a change to OrderWorkflow").
const (
	// RevisionPerChange upserts the search attributes at every change and signals the
	// resting orders a match traded with from the workflow (SignalExternalWorkflow,
	// which costs the run a second workflow task to learn the signals were delivered).
	RevisionPerChange = 0
	// RevisionBatched collects the search-attribute changes of a workflow task into one
	// upsert, made when the run blocks or ends, and leaves the fill signals to the
	// Execute activity, which sends them once its transaction has committed.
	RevisionBatched = 1
	// CurrentRevision is the revision new runs follow; it does not change any more.
	CurrentRevision = RevisionBatched
)

// RetryConfig is the retry policy of the lifecycle steps. Transient failures (database or
// broker unavailable, optimistic-lock conflicts) are retried with exponential backoff
// from InitialInterval up to MaximumInterval, MaximumAttempts times in all; then the
// order is parked for an operator.
type RetryConfig struct {
	InitialInterval time.Duration
	MaximumInterval time.Duration
	MaximumAttempts int32
	// StepTimeout bounds one attempt of a lifecycle step (a stuck connection); 0: 15s.
	StepTimeout time.Duration
}

// DefaultRetry retries for about two and a half minutes before parking an order when
// attempts fail fast, about five and a half when each one times out.
var DefaultRetry = RetryConfig{InitialInterval: 200 * time.Millisecond, MaximumInterval: 30 * time.Second, MaximumAttempts: 12}

func (r RetryConfig) orDefault() RetryConfig {
	if r.InitialInterval <= 0 {
		r.InitialInterval = DefaultRetry.InitialInterval
	}
	if r.MaximumInterval <= 0 {
		r.MaximumInterval = DefaultRetry.MaximumInterval
	}
	if r.MaximumAttempts <= 0 {
		r.MaximumAttempts = DefaultRetry.MaximumAttempts
	}
	return r
}

// OrderResult is how the order's run ended.
type OrderResult struct {
	OrderID int64
	Status  order.Status
	Reason  string
}

// CancelSignal is SignalCancel's payload. Reason is the order's reason once cancelled
// (empty: the client's cancel).
type CancelSignal struct {
	RequestedBy string
	Reason      string
}

// FillSignal is SignalFill's payload: the status the trade left the resting order in.
type FillSignal struct {
	Status order.Status
}

// RetrySignal is SignalRetry's payload (it may be sent empty).
type RetrySignal struct {
	RequestedBy string
}

// FailSignal is SignalFail's payload.
type FailSignal struct {
	Reason      string
	RequestedBy string
}

// maxSignalsPerRun bounds a long-resting order's history: after that many fill signals
// the run continues as new, carrying nothing but its input (PostgreSQL has the rest).
const maxSignalsPerRun = 500

// stepOptions: every lifecycle step is one short PostgreSQL transaction, so it runs as a
// local activity — in the worker that runs the workflow task, with no round trip through
// the server — which roughly triples the throughput of a run; each step is still
// recorded in the history (as a marker) and shown in the Temporal UI. A short
// StartToClose bounds a stuck connection; business outcomes are results, not errors,
// and the only permanent errors are the non-retryable types below.
func stepOptions(r RetryConfig) workflow.LocalActivityOptions {
	return workflow.LocalActivityOptions{
		StartToCloseTimeout: r.stepTimeout(),
		// The SDK ends a local activity's retries at its ScheduleToClose, which defaults to
		// one StartToClose: a single timeout would park the order. The whole budget, every
		// attempt at its timeout plus every backoff, leaves the retry policy to decide.
		ScheduleToCloseTimeout: r.budget(),
		RetryPolicy:            retryPolicy(r),
	}
}

// stepTimeout is StepTimeout or its default.
func (r RetryConfig) stepTimeout() time.Duration {
	if r.StepTimeout <= 0 {
		return 15 * time.Second
	}
	return r.StepTimeout
}

// budget is the longest a step may take through all of its attempts: each one at its
// timeout, and the backoffs between them (doubling from InitialInterval, capped at
// MaximumInterval).
// It is capped at maxStepBudget, which also keeps the sum from overflowing.
func (r RetryConfig) budget() time.Duration {
	total := time.Duration(0)
	backoff := r.InitialInterval
	for i := range r.MaximumAttempts {
		total += r.stepTimeout()
		if i > 0 {
			total += backoff
			backoff = min(2*backoff, r.MaximumInterval)
		}
		if total >= maxStepBudget {
			return maxStepBudget
		}
	}
	return total
}

// maxStepBudget bounds a step's retries however its policy is set: past it, the order is
// parked for an operator.
const maxStepBudget = 24 * time.Hour

func retryPolicy(r RetryConfig) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        r.InitialInterval,
		BackoffCoefficient:     2,
		MaximumInterval:        r.MaximumInterval,
		MaximumAttempts:        r.MaximumAttempts,
		NonRetryableErrorTypes: []string{activities.ErrTypeUnknownOrder, activities.ErrTypeInvalidTransition},
	}
}

// amendOptions are the Amend step's: a regular activity, unlike the other lifecycle steps
// (changeDurableAmend), with their timeout, budget and retry policy.
func amendOptions(r RetryConfig) workflow.ActivityOptions {
	return workflow.ActivityOptions{StartToCloseTimeout: r.stepTimeout(), ScheduleToCloseTimeout: r.budget(), RetryPolicy: retryPolicy(r)}
}

// changeDurableAmend is the workflow.GetVersion change id of runs whose Amend step is a
// regular activity. A client's amendment is an Update, which is in the history only once
// the workflow task that accepted it completes. As a local activity the step ran inside
// that task, so a task whose completion the server refused (a fill's signal arrived
// meanwhile) dropped the Update while the amendment stood committed; a regular activity
// is scheduled by that completion, so it runs only once the acceptance is recorded, and
// a task lost after it replays the accepted Update.
const changeDurableAmend = "durable-amend"

// bookkeepingOptions are for the steps that record an operator's view (parking,
// resuming, failing): regular activities, so operators can see, pause or reset them in
// the UI, and retried without limit, because there is no one left to escalate to.
func bookkeepingOptions(r RetryConfig) workflow.ActivityOptions {
	p := retryPolicy(r)
	p.MaximumAttempts = 0
	return workflow.ActivityOptions{StartToCloseTimeout: 15 * time.Second, RetryPolicy: p}
}

// run is one order's workflow state.
type run struct {
	ctx      workflow.Context
	in       OrderInput
	res      OrderResult
	cancelCh workflow.ReceiveChannel
	fillCh   workflow.ReceiveChannel
	retryCh  workflow.ReceiveChannel
	failCh   workflow.ReceiveChannel
	cancel   *CancelSignal
	// parkedAt is the step the run is parked at ("" when not parked); decision is the
	// operator's Update being applied, which decisionCh wakes the parked run for.
	parkedAt   string
	decision   *decision
	decisionCh workflow.Channel
	// amend is the client's amendment being applied, which amendCh wakes the resting
	// run for.
	amend    *amendment
	amendCh  workflow.Channel
	signals  int
	known    bool       // the search attributes describing the order are set
	executed bool       // this run has run the Execute step
	gone     bool       // the run has no order of its own (see disowned)
	expireAt *time.Time // a DAY or GTD order's expiry, from its steps' results
	// pending are search-attribute changes not yet upserted (RevisionBatched).
	pending []temporal.SearchAttributeUpdate
}

// OrderWorkflow drives one order through its lifecycle. It is a loop over the order's
// status, so a run started for an order that is already part-way (a Kafka message
// replayed after the run was forgotten, or a continue-as-new) resumes where PostgreSQL
// says the order stands: each activity is a no-op for an order past its step.
func OrderWorkflow(ctx workflow.Context, in OrderInput) (OrderResult, error) {
	in.Retry = in.Retry.orDefault()
	r := &run{
		ctx:      workflow.WithLocalActivityOptions(ctx, stepOptions(in.Retry)),
		in:       in,
		res:      OrderResult{OrderID: in.OrderID, Status: order.Created},
		cancelCh: workflow.GetSignalChannel(ctx, SignalCancel),
		fillCh:   workflow.GetSignalChannel(ctx, SignalFill),
		retryCh:  workflow.GetSignalChannel(ctx, SignalRetry),
		failCh:   workflow.GetSignalChannel(ctx, SignalFail),
		// Buffered, so an Update handler hands its decision over without waiting.
		decisionCh: workflow.NewBufferedChannel(ctx, 1),
		amendCh:    workflow.NewBufferedChannel(ctx, 1),
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (order.Status, error) { return r.res.Status, nil }); err != nil {
		return r.res, err
	}
	if err := r.handleDecisions(ctx); err != nil {
		return r.res, err
	}
	if err := r.handleAmendments(ctx); err != nil {
		return r.res, err
	}
	res, err := r.loop()
	// However the run ends (done, failed, continued as new), its search attributes
	// leave with it: the closed run's visibility record is what operators filter on.
	r.flush()
	// An operator's Update is answered before the run closes on it.
	r.refuseDecision("the run ended before the decision could be applied")
	r.answerAmendment(activities.AmendResult{}, notAmendable("order %d ended before the amendment could be applied", in.OrderID))
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return res, err
}

// decision is an operator's Update in progress.
type decision struct {
	fail       bool
	reason, by string
	done       bool
	result     DecisionResult
	err        error
}

// handleDecisions registers the operator's Updates. Each is validated (refused unless
// the run is parked and no other decision is in progress), handed to the parked run, and
// answered once the run has applied it.
func (r *run) handleDecisions(ctx workflow.Context) error {
	validate := func() error {
		if r.parkedAt == "" || ctx.Err() != nil {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("order %d is %s and not parked: only an order whose execution stalled can be retried or failed", r.in.OrderID, r.res.Status),
				ErrTypeNotParked, nil)
		}
		if r.decision != nil {
			return temporal.NewNonRetryableApplicationError("another operator decision is being applied", ErrTypeNotParked, nil)
		}
		return nil
	}
	decide := func(ctx workflow.Context, d *decision) (DecisionResult, error) {
		r.decision = d
		r.decisionCh.SendAsync(true)
		if err := workflow.Await(ctx, func() bool { return d.done }); err != nil {
			return DecisionResult{}, err
		}
		return d.result, d.err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRetry,
		func(ctx workflow.Context, s RetrySignal) (DecisionResult, error) {
			return decide(ctx, &decision{by: s.RequestedBy})
		},
		workflow.UpdateHandlerOptions{Validator: func(RetrySignal) error { return validate() }},
	); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateFail,
		func(ctx workflow.Context, s FailSignal) (DecisionResult, error) {
			return decide(ctx, &decision{fail: true, reason: s.Reason, by: s.RequestedBy})
		},
		workflow.UpdateHandlerOptions{Validator: func(FailSignal) error { return validate() }},
	)
}

// amendment is a client's UpdateAmend in progress.
type amendment struct {
	in     activities.AmendInput
	done   bool
	result activities.AmendResult
	err    error
}

// handleAmendments registers UpdateAmend: validated (refused unless the run rests on the
// book and is not busy), handed to the resting run, and answered once the run applied it.
func (r *run) handleAmendments(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateAmend,
		func(ctx workflow.Context, req AmendRequest) (activities.AmendResult, error) {
			a := &amendment{in: activities.AmendInput{
				OrderID: r.in.OrderID, AmendID: workflow.GetCurrentUpdateInfo(ctx).ID,
				Quantity: req.Quantity, Price: req.Price, IfVersion: req.IfVersion, RequestedBy: req.RequestedBy,
			}}
			r.amend = a
			r.amendCh.SendAsync(true)
			if err := workflow.Await(ctx, func() bool { return a.done }); err != nil {
				return activities.AmendResult{}, err
			}
			return a.result, a.err
		},
		workflow.UpdateHandlerOptions{Validator: func(req AmendRequest) error {
			switch {
			case req.Quantity < 0:
				return notAmendable("a quantity must be positive")
			case ctx.Err() != nil || r.parkedAt != "" || !r.res.Status.Resting():
				return notAmendable("order %d is %s and not resting on the book", r.in.OrderID, r.res.Status)
			case r.amend != nil || r.decision != nil:
				return notAmendable("order %d is being amended or decided by another request", r.in.OrderID)
			}
			return nil
		}},
	)
}

func notAmendable(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeNotAmendable, nil)
}

// answerAmendment answers the amendment in progress, if any.
func (r *run) answerAmendment(res activities.AmendResult, err error) {
	if r.amend != nil {
		r.amend.done, r.amend.result, r.amend.err = true, res, err
		r.amend = nil
	}
	r.amendCh.ReceiveAsync(nil)
}

// applyAmendment runs the Amend step for the amendment in progress and answers it. A
// step that fails (parked and failed by an operator, a cancel that came first) answers
// it refused; the loop handles the error as any step's.
func (r *run) applyAmendment() (activities.StepResult, error) {
	var a *activities.Activities
	in := r.amend.in
	var res activities.AmendResult
	durable := workflow.GetVersion(r.ctx, changeDurableAmend, workflow.DefaultVersion, 1) >= 1
	step, err := r.step("Amend", func(ctx workflow.Context) (activities.StepResult, error) {
		if durable {
			err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, amendOptions(r.in.Retry)), a.Amend, in).Get(ctx, &res)
			return res.StepResult, err
		}
		err := workflow.ExecuteLocalActivity(ctx, a.Amend, in).Get(ctx, &res)
		return res.StepResult, err
	})
	if err != nil {
		// Its last attempt may have committed before it failed: the caller cannot be told
		// it was not applied (ErrTypeAmendUncertain).
		r.answerAmendment(res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the Amend step of order %d failed (%v); the order's timeline shows whether it was applied", in.OrderID, rootCause(err)),
			ErrTypeAmendUncertain, nil))
		return step, err
	}
	r.answerAmendment(res, nil)
	return step, nil
}

// applied answers the decision in progress, if any, with the order's status.
func (r *run) applied(st order.Status, step string) {
	if r.decision != nil {
		r.decision.done, r.decision.result = true, DecisionResult{Status: st, Step: step}
		r.decision = nil
	}
}

// refuseDecision answers the decision in progress, if any, with an error: the run left
// the park another way (a cancel, its end).
func (r *run) refuseDecision(why string) {
	if r.decision != nil {
		r.decision.done, r.decision.err = true, temporal.NewNonRetryableApplicationError(why, ErrTypeNotParked, nil)
		r.decision = nil
	}
	r.decisionCh.ReceiveAsync(nil)
}

func (r *run) loop() (OrderResult, error) {
	var a *activities.Activities
	id := r.in.OrderID
	for !r.res.Status.Terminal() && !r.gone {
		if r.runCancelled() {
			return r.cancelOrderOfCancelledRun()
		}
		r.takeCancel()
		var step activities.StepResult
		var err error
		switch {
		case r.cancel != nil:
			in := activities.CancelInput{OrderID: id, RequestedBy: r.cancel.RequestedBy, Reason: r.cancel.Reason}
			r.cancel = nil
			step, err = r.step("Cancel", func(ctx workflow.Context) (activities.StepResult, error) {
				var s activities.StepResult
				return s, workflow.ExecuteLocalActivity(ctx, a.Cancel, in).Get(ctx, &s)
			})
		case r.res.Status == order.Created:
			step, err = r.step("Validate", func(ctx workflow.Context) (activities.StepResult, error) {
				var s activities.StepResult
				return s, workflow.ExecuteLocalActivity(ctx, a.Validate, id).Get(ctx, &s)
			})
		case r.res.Status == order.Validated:
			step, err = r.step("SendToExecutor", func(ctx workflow.Context) (activities.StepResult, error) {
				var s activities.StepResult
				return s, workflow.ExecuteLocalActivity(ctx, a.SendToExecutor, id).Get(ctx, &s)
			})
		case r.res.Status == order.SentToExecutor:
			step, err = r.execute()
		default: // resting on the book: wait for a fill or a cancel
			if r.signals >= maxSignalsPerRun && r.fillCh.Len() == 0 && r.cancelCh.Len() == 0 && r.amend == nil {
				// The next run has no history to replay, so it takes the last revision.
				next := r.in
				next.Revision = CurrentRevision
				return r.res, workflow.NewContinueAsNewError(r.ctx, OrderWorkflow, next)
			}
			var rechecked bool
			if step, rechecked, err = r.waitOnBook(); !rechecked {
				continue
			}
			if err != nil && workflow.GetVersion(r.ctx, changeRecheckErrors, workflow.DefaultVersion, 1) < 1 {
				continue // runs before the change ignored a recheck that failed, and waited on
			}
		}
		var decided *operatorFail
		switch {
		case errors.Is(err, errCancelWhileParked):
			continue // the loop applies r.cancel
		case temporal.IsCanceledError(err) && r.runCancelled():
			return r.cancelOrderOfCancelledRun()
		case errors.As(err, &decided):
			step, err = r.failOrder(decided.reason, decided.requestedBy)
			if err == nil {
				r.applied(step.Status, "")
			}
		case r.disowned(err):
			return r.res, nil
		case err != nil:
			workflow.GetLogger(r.ctx).Error("order step failed permanently", "order_id", id, "error", err)
			step, err = r.failOrder(err.Error(), "")
		}
		if err == nil && !r.executed && matched(step.Status) {
			// The order was matched, but not by a step of this run that got to tell the
			// resting orders it traded with: the workflow task that ran Execute was lost
			// after the commit (its local activities replay as no-ops), or this run was
			// started for an order already past it. Execute is a no-op now that reports
			// the same counterparties, so they still learn of their fills.
			step, err = r.execute()
		}
		if err != nil {
			return r.res, err
		}
		r.observe(step)
	}
	return r.res, nil
}

// execute runs the Execute step and tells the resting orders it traded with.
func (r *run) execute() (activities.StepResult, error) {
	var a *activities.Activities
	r.executed = true
	return r.step("Execute", func(ctx workflow.Context) (activities.StepResult, error) {
		// A sweep deeper than one step's bound continues in further steps, each its own
		// transaction; More is false in every result recorded before sweeps had steps,
		// so their histories replay as one step.
		for {
			var ex activities.ExecuteResult
			if err := workflow.ExecuteLocalActivity(ctx, a.Execute, r.in.OrderID).Get(ctx, &ex); err != nil {
				return ex.StepResult, err
			}
			if r.in.Revision < RevisionBatched {
				notifyCounterparties(ctx, ex.Counterparties)
			}
			if !ex.More {
				return ex.StepResult, nil
			}
		}
	})
}

// matched reports whether an order in status s has been through matching.
func matched(s order.Status) bool {
	switch s {
	case order.Executing, order.PartiallyFilled, order.Executed, order.PartiallyCancelled:
		return true
	}
	return false
}

// takeCancel notes a pending cancel request without blocking.
func (r *run) takeCancel() {
	var s CancelSignal
	for r.cancelCh.ReceiveAsync(&s) {
		r.cancel = &s
	}
}

// waitOnBook waits for the next fill or cancel of a resting order, or for the run to be
// cancelled (the loop then cancels the order). Every restingRecheck without either, it
// reads the order back (changeRestingRecheck), so a fill signal that never came (its
// sender died past its notices' retries, say) heals itself rather than leave the run
// waiting for ever.
//
// rechecked reports that it read the order back, with the step's result and error, which
// the loop handles as any step's (changeRecheckErrors): a recheck can park, and find the
// run has no order of its own.
func (r *run) waitOnBook() (step activities.StepResult, rechecked bool, err error) {
	var fill FillSignal
	woke, due, expired, amending := false, false, false, false
	recheck := workflow.GetVersion(r.ctx, changeRestingRecheck, workflow.DefaultVersion, 1) >= 1
	// Only a DAY or GTD order has an expiry, and runs from before them never did, so
	// their histories never reach this question (changeExpiry).
	expiring := r.expireAt != nil && workflow.GetVersion(r.ctx, changeExpiry, workflow.DefaultVersion, 1) >= 1
	wait := func(watchRun bool) {
		sel := workflow.NewSelector(r.ctx)
		sel.AddReceive(r.cancelCh, func(c workflow.ReceiveChannel, _ bool) {
			var s CancelSignal
			c.Receive(r.ctx, &s)
			r.cancel = &s
			woke = true
		})
		sel.AddReceive(r.fillCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(r.ctx, &fill)
			woke = true
		})
		// Only an UpdateAmend sends on amendCh, so histories without one never take this.
		sel.AddReceive(r.amendCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(r.ctx, nil)
			amending = true
		})
		if watchRun {
			sel.AddReceive(r.ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		}
		if recheck && watchRun {
			timerCtx, stop := workflow.WithCancel(r.ctx)
			defer stop() // a timer outlived by a signal must not wake the run later
			sel.AddFuture(workflow.NewTimer(timerCtx, restingRecheck), func(workflow.Future) { due = true })
		}
		if expiring && watchRun {
			// A durable timer: it fires at the expiry across worker restarts, and a run
			// that continued as new sets it again from its first step's result. An
			// expiry already past (the database's clock behind this one) is tried again
			// a second later rather than at once.
			left := r.expireAt.Sub(workflow.Now(r.ctx))
			if left <= 0 {
				left = time.Second
			}
			timerCtx, stop := workflow.WithCancel(r.ctx)
			defer stop()
			sel.AddFuture(workflow.NewTimer(timerCtx, left), func(workflow.Future) { expired = true })
		}
		sel.Select(r.ctx)
	}
	r.flush()
	wait(true)
	if !woke && !due && !expired && !amending {
		// The run was cancelled. Runs that rested before cancelled runs cancelled their
		// orders kept waiting for a signal, as their histories recorded.
		if r.runCancelled() {
			return step, false, nil
		}
		wait(false)
	}
	if amending && r.amend != nil {
		step, err = r.applyAmendment()
		return step, true, err
	}
	r.signals++
	if expired {
		var a *activities.Activities
		step, err = r.step("Expire", func(ctx workflow.Context) (activities.StepResult, error) {
			var s activities.StepResult
			return s, workflow.ExecuteLocalActivity(ctx, a.Expire, r.in.OrderID).Get(ctx, &s)
		})
		return step, true, err
	}
	if due {
		// Execute is a no-op for a resting order that reports where it stands.
		step, err = r.execute()
		return step, true, err
	}
	if fill.Status != "" && fill.Status != r.res.Status {
		r.res.Status = fill.Status
		r.publish()
	}
	return step, false, nil
}

// changeRecheckErrors is the workflow.GetVersion change id of a resting run whose recheck
// failed (it parked and was failed by an operator, found no order of its own, …) and
// handles the error as any step's; it is asked only then.
const changeRecheckErrors = "recheck-errors"

// runCancelled reports whether the run has been cancelled (from the Temporal UI or the
// CLI) and cancels its order on its way out (changeCleanupOnCancel; runs of before that
// change did not).
func (r *run) runCancelled() bool {
	if r.ctx.Err() == nil {
		return false
	}
	return workflow.GetVersion(r.ctx, changeCleanupOnCancel, workflow.DefaultVersion, 1) >= 1
}

// cancelOrderOfCancelledRun cancels the order of a run that is being cancelled, on a
// context the cancellation does not reach, and ends the run cancelled. The order ends
// CANCELLED or PARTIALLY_CANCELLED (reason RUN_CANCELLED), or as it stands if it had
// already ended.
func (r *run) cancelOrderOfCancelledRun() (OrderResult, error) {
	var a *activities.Activities
	ctx, _ := workflow.NewDisconnectedContext(r.ctx)
	ctx = workflow.WithLocalActivityOptions(ctx, stepOptions(r.in.Retry))
	var step activities.StepResult
	err := workflow.ExecuteLocalActivity(ctx, a.Cancel, activities.CancelInput{
		OrderID: r.in.OrderID, Reason: order.ReasonRunCancelled, RequestedBy: "temporal",
	}).Get(ctx, &step)
	if err != nil {
		workflow.GetLogger(ctx).Error("the cancelled run could not cancel its order", "order_id", r.in.OrderID, "error", err)
		return r.res, r.ctx.Err()
	}
	r.res.Status, r.res.Reason = step.Status, step.Reason
	r.publish()
	return r.res, r.ctx.Err()
}

// observe records a step's result and shows it to operators.
func (r *run) observe(step activities.StepResult) {
	if step.ExpireAt != nil {
		r.expireAt = step.ExpireAt
	}
	changed := step.Status != r.res.Status
	r.res.Status, r.res.Reason = step.Status, step.Reason
	if !r.known && step.UserID != 0 {
		r.known = true
		r.show(AttrUserID.ValueSet(step.UserID), AttrInstrumentID.ValueSet(step.InstrumentID),
			AttrOrderSide.ValueSet(string(step.Side)), AttrOrderKind.ValueSet(string(step.Kind)),
			AttrOrderStatus.ValueSet(string(step.Status)))
		workflow.SetCurrentDetails(r.ctx, summary(r.in.OrderID, step))
		return
	}
	if changed {
		r.publish()
	}
}

// publish keeps the OrderStatus search attribute current, so a UI filter such as
// OrderStatus="PARTIALLY_FILLED" finds exactly the runs in that state.
func (r *run) publish() {
	r.show(AttrOrderStatus.ValueSet(string(r.res.Status)))
}

// show sets search attributes for operators. Each upsert is a history event and a
// visibility write on the server, and what operators filter on is where a run rests or
// how it ended, so RevisionBatched runs collect the changes and flush them in one upsert
// when the run blocks or ends; older runs upsert at once, as they recorded.
func (r *run) show(updates ...temporal.SearchAttributeUpdate) {
	if r.in.Revision < RevisionBatched {
		_ = workflow.UpsertTypedSearchAttributes(r.ctx, updates...)
		return
	}
	r.pending = append(r.pending, updates...)
}

// flush upserts the collected changes, later ones winning; call it before the run
// blocks or ends.
func (r *run) flush() {
	if len(r.pending) == 0 {
		return
	}
	_ = workflow.UpsertTypedSearchAttributes(r.ctx, r.pending...)
	r.pending = nil
}

// summary is the one line the Temporal UI shows for the run.
func summary(id int64, s activities.StepResult) string {
	price := ""
	if s.Price != "" {
		price = " @ " + s.Price
	}
	return fmt.Sprintf("order %d: %s %s %d%s on instrument %d for user %d — %s",
		id, s.Side, s.Kind, s.Quantity, price, s.InstrumentID, s.UserID, s.Status)
}

// restingRecheck is how long a resting run waits without a signal before it reads its
// order back.
const restingRecheck = 10 * time.Minute

// changeRestingRecheck is the workflow.GetVersion change id of resting runs that read
// their order back every restingRecheck.
const changeRestingRecheck = "resting-recheck"

// changeExpiry is the workflow.GetVersion change id of resting DAY and GTD runs, which
// wait on a timer for their order's expiry.
const changeExpiry = "expiry"

// Reasons of a run that ends without an order of its own.
const (
	// ReasonUnknownOrder: no order has the run's order id (a message for an id not yet
	// used, or one a restore took back).
	ReasonUnknownOrder = "UNKNOWN_ORDER"
	// ReasonForeignRun: the order with the run's id is not the run's (another run key).
	ReasonForeignRun = "FOREIGN_RUN"
)

// disowned reports whether err says the run has no order of its own (changeEndDisowned),
// and then makes the run's result say so. Such a run ends touching nothing; runs before
// that change failed the order, or kept waiting on the book.
func (r *run) disowned(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	reason := map[string]string{
		activities.ErrTypeUnknownOrder: ReasonUnknownOrder,
		activities.ErrTypeForeignRun:   ReasonForeignRun,
	}[appErr.Type()]
	if reason == "" || workflow.GetVersion(r.ctx, changeEndDisowned, workflow.DefaultVersion, 1) < 1 {
		return false
	}
	workflow.GetLogger(r.ctx).Warn("the run has no order of its own; it ends", "order_id", r.in.OrderID, "reason", reason, "error", err)
	r.res = OrderResult{OrderID: r.in.OrderID, Reason: reason}
	r.gone = true
	return true
}

// changeEndDisowned is the workflow.GetVersion change id of a run that ends when it finds
// no order of its own; it is asked only then.
const changeEndDisowned = "end-disowned"

// changeCleanupOnCancel is the workflow.GetVersion change id of a cancelled run that
// cancels its order; it is asked only once a run is cancelled.
const changeCleanupOnCancel = "cleanup-on-cancel"

// changeCancelWhileParked is the workflow.GetVersion change id of a parked run that
// applies a cancel signal instead of waiting for an operator's decision.
const changeCancelWhileParked = "cancel-while-parked"

// errCancelWhileParked ends a parked step when a cancel reached it; the run applies the
// cancel next.
var errCancelWhileParked = errors.New("cancel requested while parked")

// operatorFail is an operator's decision to fail a parked order.
type operatorFail struct {
	reason, requestedBy string
}

func (e *operatorFail) Error() string { return "failed by operator: " + e.reason }

// step runs one lifecycle step. When the step exhausts its retry budget the order is
// parked: the run marks it (NeedsAttention, EXECUTION_STALLED with the last error) and
// waits for an operator to retry the step or fail the order. A permanent error is
// returned as is; an operator's fail decision is returned as *operatorFail.
func (r *run) step(name string, do func(workflow.Context) (activities.StepResult, error)) (activities.StepResult, error) {
	var a *activities.Activities
	for {
		res, err := do(r.ctx)
		if err == nil || !isRetryBudgetExhausted(err) {
			return res, err
		}
		log := workflow.GetLogger(r.ctx)
		log.Warn("order step exhausted its retries; parking the order", "order_id", r.in.OrderID, "step", name, "error", err)
		r.show(AttrNeedsAttention.ValueSet(true))
		r.flush()
		workflow.SetCurrentDetails(r.ctx, fmt.Sprintf("PARKED at %s: %v — send signal %q to retry or %q to fail", name, err, SignalRetry, SignalFail))
		book := workflow.WithActivityOptions(r.ctx, bookkeepingOptions(r.in.Retry))
		stalled := workflow.ExecuteActivity(book, a.MarkStalled, activities.StallInput{
			OrderID: r.in.OrderID, Step: name, Error: rootCause(err), Attempts: r.in.Retry.MaximumAttempts,
		})

		retry, fail, cancel, err := r.awaitDecision(name, stalled)
		if err != nil {
			r.refuseDecision("the parked run could not record the decision")
			return res, err
		}
		if cancel != nil {
			r.refuseDecision("a cancel of the order came first")
			log.Info("a cancel reached the parked order; the run applies it", "order_id", r.in.OrderID, "step", name)
			if err := workflow.ExecuteActivity(book, a.Resume, activities.ResumeInput{
				OrderID: r.in.OrderID, Step: name, RequestedBy: orOperator(cancel.RequestedBy),
			}).Get(r.ctx, nil); err != nil {
				return res, err
			}
			r.show(AttrNeedsAttention.ValueSet(false))
			r.cancel = cancel
			return res, errCancelWhileParked
		}
		if fail != nil {
			reason := fail.Reason
			if reason == "" {
				reason = "failed by operator after " + name + " stalled"
			}
			return res, &operatorFail{reason: reason, requestedBy: orOperator(fail.RequestedBy)}
		}
		log.Info("operator retries the parked step", "order_id", r.in.OrderID, "step", name)
		var resumed activities.StepResult
		if err := workflow.ExecuteActivity(book, a.Resume, activities.ResumeInput{
			OrderID: r.in.OrderID, Step: name, RequestedBy: orOperator(retry.RequestedBy),
		}).Get(r.ctx, &resumed); err != nil {
			r.refuseDecision("the parked run could not record the retry")
			return res, err
		}
		r.show(AttrNeedsAttention.ValueSet(false))
		r.applied(resumed.Status, name)
	}
}

// awaitDecision waits, parked at step, for what ends the park: an operator's decision
// (an Update, or the retry and fail signals of the Temporal UI) or a client's cancel, and
// for the parking record (stalled) to be in place. Exactly one of the results is set
// unless err is.
//
// A retry or fail signal already waiting when the run parks was sent while it was not
// parked, about nothing it could decide: from changeDropStaleDecisions it is dropped, and
// the run waits for a decision made now. Runs before that change applied it. The version
// is asked where the two differ, when the stale signal is in hand and the parking record
// is in place, so that the command that follows (a Resume or Fail, or none) is recorded
// in the same workflow task as the marker.
func (r *run) awaitDecision(step string, stalled workflow.Future) (retry *RetrySignal, fail *FailSignal, cancel *CancelSignal, err error) {
	staleRetry, staleFail := r.retryCh.Len(), r.failCh.Len()
	r.parkedAt = step
	defer func() { r.parkedAt = "" }()
	watchRun := true
	for {
		var fromSignal, runDone bool
		sel := workflow.NewSelector(r.ctx)
		// The run cancelled from the Temporal UI or CLI while parked (changeCancelParkedRun;
		// runs before it waited on for a decision).
		if watchRun {
			sel.AddReceive(r.ctx.Done(), func(workflow.ReceiveChannel, bool) { runDone = true })
		}
		sel.AddReceive(r.retryCh, func(c workflow.ReceiveChannel, _ bool) {
			var s RetrySignal
			c.Receive(r.ctx, &s)
			retry, fromSignal = &s, true
		})
		sel.AddReceive(r.failCh, func(c workflow.ReceiveChannel, _ bool) {
			var f FailSignal
			c.Receive(r.ctx, &f)
			fail, fromSignal = &f, true
		})
		sel.AddReceive(r.decisionCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(r.ctx, nil)
			if d := r.decision; d != nil && d.fail {
				fail = &FailSignal{Reason: d.reason, RequestedBy: d.by}
			} else if d != nil {
				retry = &RetrySignal{RequestedBy: d.by}
			}
		})
		// A client's cancel decides a parked order too: the run applies it rather than
		// wait for an operator to retry a step that would only apply it anyway. Runs
		// parked before this left a cancel buffered until the operator decided.
		if workflow.GetVersion(r.ctx, changeCancelWhileParked, workflow.DefaultVersion, 1) >= 1 {
			sel.AddReceive(r.cancelCh, func(c workflow.ReceiveChannel, _ bool) {
				var s CancelSignal
				c.Receive(r.ctx, &s)
				cancel = &s
			})
		}
		sel.Select(r.ctx)
		if runDone {
			if workflow.GetVersion(r.ctx, changeCancelParkedRun, workflow.DefaultVersion, 1) >= 1 {
				return nil, nil, nil, r.ctx.Err() // the loop cancels the order
			}
			watchRun = false
			continue
		}
		// The parking record must be in place before the decision is recorded after it.
		if err := stalled.Get(r.ctx, nil); err != nil {
			return nil, nil, nil, err
		}
		if retry == nil && fail == nil && cancel == nil {
			continue // a decision refused before the run took it
		}
		if fromSignal || cancel != nil {
			// A signal decided; an Update that arrived meanwhile is answered as refused,
			// never with the outcome of another decision.
			r.refuseDecision("the parked run was decided by another request first")
		}
		stale := fromSignal && ((retry != nil && staleRetry > 0) || (fail != nil && staleFail > 0))
		if !stale || workflow.GetVersion(r.ctx, changeDropStaleDecisions, workflow.DefaultVersion, 1) < 1 {
			return retry, fail, cancel, nil
		}
		if retry != nil {
			staleRetry--
		} else {
			staleFail--
		}
		workflow.GetLogger(r.ctx).Warn("dropped an operator signal sent while the run was not parked",
			"order_id", r.in.OrderID, "step", step, "retry", retry != nil, "fail", fail != nil)
		retry, fail = nil, nil
	}
}

// changeCancelParkedRun is the workflow.GetVersion change id of a parked run that, when
// cancelled, leaves the park and cancels its order; it is asked only then.
const changeCancelParkedRun = "cancel-parked-run"

// changeDropStaleDecisions is the workflow.GetVersion change id of a parked run that
// drops the retry and fail signals sent before it parked; it is asked only when it has
// one in hand.
const changeDropStaleDecisions = "drop-stale-decisions"

// failOrder ends the order FAILED with the reason, clearing any parked state.
func (r *run) failOrder(reason, requestedBy string) (activities.StepResult, error) {
	var a *activities.Activities
	book := workflow.WithActivityOptions(r.ctx, bookkeepingOptions(r.in.Retry))
	var step activities.StepResult
	err := workflow.ExecuteActivity(book, a.Fail, activities.FailInput{OrderID: r.in.OrderID, Reason: reason, RequestedBy: requestedBy}).Get(r.ctx, &step)
	if err == nil && r.known {
		r.show(AttrNeedsAttention.ValueSet(false))
	}
	return step, err
}

func orOperator(by string) string {
	if by == "" {
		return "operator"
	}
	return by
}

// isRetryBudgetExhausted reports whether err is a step that failed after its retry
// policy gave up, as opposed to a permanent (non-retryable) failure or the run being
// cancelled. A local activity's error arrives unwrapped, a regular one's inside an
// ActivityError; both count.
func isRetryBudgetExhausted(err error) bool {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		return false
	}
	return !temporal.IsCanceledError(err)
}

// rootCause is the innermost error message, which is what an operator needs to read.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// notifyCounterparties tells the runs of the resting orders an execution traded with
// about their fills. A missing run is logged, not fatal: the trade is committed and the
// order's row is the truth; the run finds it when it next reads.
func notifyCounterparties(ctx workflow.Context, cps []activities.Counterparty) {
	futures := make([]workflow.Future, len(cps))
	for i, cp := range cps {
		futures[i] = workflow.SignalExternalWorkflow(ctx, OrderWorkflowID(cp.OrderID, cp.RunKey), "", SignalFill, FillSignal{Status: cp.Status})
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("fill signal not delivered", "order_id", cps[i].OrderID, "error", err)
		}
	}
}
