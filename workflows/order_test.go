package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/workflows"
)

const orderID int64 = 1

// harness is one test's workflow environment, with the activity methods to mock and the
// names of the activities the run started, in order (retries included).
type harness struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	a     *activities.Activities
	calls []string
	// regular are the activities among calls that ran as regular activities.
	regular []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	h := &harness{t: t, env: suite.NewTestWorkflowEnvironment(), a: &activities.Activities{}}
	h.env.RegisterActivity(h.a)
	// The listener runs on the environment's main loop, so calls needs no lock.
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		h.calls = append(h.calls, info.ActivityType.Name)
		h.regular = append(h.regular, info.ActivityType.Name)
	})
	// The lifecycle steps run as local activities, which have a listener of their own.
	h.env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		h.calls = append(h.calls, info.ActivityType.Name)
	})
	t.Cleanup(func() { h.env.AssertExpectations(t) })
	return h
}

func step(s order.Status) activities.StepResult { return activities.StepResult{Status: s} }

func (h *harness) onValidate(r activities.StepResult, err error) *testsuite.MockCallWrapper {
	return h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(r, err).Once()
}

func (h *harness) onSend(r activities.StepResult, err error) *testsuite.MockCallWrapper {
	return h.env.OnActivity(h.a.SendToExecutor, mock.Anything, orderID).Return(r, err).Once()
}

func (h *harness) onExecute(r activities.ExecuteResult, err error) *testsuite.MockCallWrapper {
	return h.env.OnActivity(h.a.Execute, mock.Anything, orderID).Return(r, err).Once()
}

// forbidUnmocked makes every activity call that no earlier mock expects fail the test, and
// fail permanently so that the run ends instead of retrying a call the test did not plan
// (the real activities have no database here). Call it after the test's own mocks.
func (h *harness) forbidUnmocked() {
	t := h.t
	unexpected := func(name string) error {
		t.Errorf("unexpected %s activity call", name)
		return temporal.NewNonRetryableApplicationError("unexpected "+name, "Unexpected", nil)
	}
	h.env.OnActivity(h.a.Validate, mock.Anything, mock.Anything).Return(
		func(context.Context, int64) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("Validate")
		}).Maybe()
	h.env.OnActivity(h.a.SendToExecutor, mock.Anything, mock.Anything).Return(
		func(context.Context, int64) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("SendToExecutor")
		}).Maybe()
	h.env.OnActivity(h.a.Execute, mock.Anything, mock.Anything).Return(
		func(context.Context, int64) (activities.ExecuteResult, error) {
			return activities.ExecuteResult{}, unexpected("Execute")
		}).Maybe()
	h.env.OnActivity(h.a.Cancel, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.CancelInput) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("Cancel")
		}).Maybe()
	h.env.OnActivity(h.a.Fail, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.FailInput) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("Fail")
		}).Maybe()
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.StallInput) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("MarkStalled")
		}).Maybe()
	h.env.OnActivity(h.a.Resume, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ResumeInput) (activities.StepResult, error) {
			return activities.StepResult{}, unexpected("Resume")
		}).Maybe()
	h.env.OnActivity(h.a.Amend, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.AmendInput) (activities.AmendResult, error) {
			return activities.AmendResult{}, unexpected("Amend")
		}).Maybe()
}

// run executes the order's workflow, as a new run would, to its end and returns its
// result.
func (h *harness) run() workflows.OrderResult {
	h.t.Helper()
	return h.runWith(workflows.OrderInput{OrderID: orderID, Revision: workflows.CurrentRevision})
}

// runPerChange is run for a run started before revisions (RevisionPerChange), which
// signals its counterparties itself.
func (h *harness) runPerChange() workflows.OrderResult {
	h.t.Helper()
	return h.runWith(workflows.OrderInput{OrderID: orderID, Revision: workflows.RevisionPerChange})
}

// runWith is run with a given input (a retry policy, say).
func (h *harness) runWith(in workflows.OrderInput) workflows.OrderResult {
	h.t.Helper()
	h.forbidUnmocked()
	h.env.ExecuteWorkflow(workflows.OrderWorkflow, in)
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	if err := h.env.GetWorkflowError(); err != nil {
		h.t.Fatalf("workflow error: %v", err)
	}
	var res workflows.OrderResult
	if err := h.env.GetWorkflowResult(&res); err != nil {
		h.t.Fatalf("workflow result: %v", err)
	}
	if res.OrderID != orderID {
		h.t.Errorf("result order id = %d, want %d", res.OrderID, orderID)
	}
	return res
}

func (h *harness) assertCalls(want ...string) {
	h.t.Helper()
	if !slices.Equal(h.calls, want) {
		h.t.Errorf("activities called %v, want %v", h.calls, want)
	}
}

func (h *harness) signal(name string, arg any, after time.Duration) {
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(name, arg) }, after)
}

func (h *harness) signalDuring(call *testsuite.MockCallWrapper, name string, arg any) {
	call.Run(func(mock.Arguments) { h.env.SignalWorkflow(name, arg) })
}

func TestMarketOrderHappyPath(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.run()
	if res.Status != order.Executed || res.Reason != "" {
		t.Errorf("result = %+v, want EXECUTED with no reason", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

// Validate hands a valid order to matching in its own write, so the run goes from it
// straight to Execute, with no SendToExecutor step (one local activity fewer per order).
func TestAValidatedOrderHandedToMatchingGoesStraightToExecute(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)
	h.forbidUnmocked()

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "Execute")
}

func TestOrderEndsAsExecuteLeavesIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		step activities.StepResult
	}{
		{"a market order without liquidity ends FAILED with NO_LIQUIDITY", activities.StepResult{Status: order.Failed, Reason: order.ReasonNoLiquidity}},
		{"a market order partly filled ends PARTIALLY_CANCELLED with its reason", activities.StepResult{Status: order.PartiallyCancelled, Reason: order.ReasonMarketRemainder, Remaining: 3}},
		{"an IOC order with nothing at its price ends CANCELLED with its reason", activities.StepResult{Status: order.Cancelled, Reason: order.ReasonIOCRemainder, Remaining: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.onValidate(step(order.Validated), nil)
			h.onSend(step(order.SentToExecutor), nil)
			h.onExecute(activities.ExecuteResult{StepResult: tc.step}, nil)

			res := h.run()
			if res.Status != tc.step.Status || res.Reason != tc.step.Reason {
				t.Errorf("result = %+v, want %s (%s)", res, tc.step.Status, tc.step.Reason)
			}
			h.assertCalls("Validate", "SendToExecutor", "Execute")
		})
	}
}

func TestRestingLimitOrderEndsOnAFillSignal(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, time.Minute)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestRestingOrderKeepsWaitingAfterAPartialFill(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, 2*time.Minute)
	var between order.Status
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.QueryStatus)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		if err := v.Get(&between); err != nil {
			t.Errorf("query result: %v", err)
		}
	}, 3*time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 5*time.Minute)

	res := h.run()
	if between != order.PartiallyFilled {
		t.Errorf("status after partial fills = %q, want PARTIALLY_FILLED (still waiting)", between)
	}
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestExecuteSignalsEachCounterparty(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{
		StepResult: step(order.Executed),
		Counterparties: []activities.Counterparty{
			{OrderID: 7, Status: order.Executed},
			{OrderID: 8, Status: order.PartiallyFilled},
		},
	}, nil)
	h.env.OnSignalExternalWorkflow(mock.Anything, "order-7", "", workflows.SignalFill,
		workflows.FillSignal{Status: order.Executed}).Return(nil).Once()
	h.env.OnSignalExternalWorkflow(mock.Anything, "order-8", "", workflows.SignalFill,
		workflows.FillSignal{Status: order.PartiallyFilled}).Return(nil).Once()

	res := h.runPerChange()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestAnUndeliveredFillSignalDoesNotFailTheOrder(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{
		StepResult:     step(order.PartiallyFilled),
		Counterparties: []activities.Counterparty{{OrderID: 7, Status: order.Executed}},
	}, nil)
	h.env.OnSignalExternalWorkflow(mock.Anything, "order-7", "", workflows.SignalFill, mock.Anything).
		Return(errors.New("unknown external workflow")).Once()
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, time.Minute)

	res := h.runPerChange()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestCancelAtEveryStage(t *testing.T) {
	cancelSignal := workflows.CancelSignal{RequestedBy: "api"}
	for _, tc := range []struct {
		name string
		// setup mocks the steps before the cancel and arranges for the signal.
		setup     func(h *harness)
		cancelled activities.StepResult
		wantCalls []string
	}{
		{
			name: "a cancel before the run starts cancels without validating",
			setup: func(h *harness) {
				h.signal(workflows.SignalCancel, cancelSignal, 0)
			},
			cancelled: step(order.Cancelled),
			wantCalls: []string{"Cancel"},
		},
		{
			name: "a cancel during Validate cancels instead of sending to the executor",
			setup: func(h *harness) {
				h.signalDuring(h.onValidate(step(order.Validated), nil), workflows.SignalCancel, cancelSignal)
			},
			cancelled: step(order.Cancelled),
			wantCalls: []string{"Validate", "Cancel"},
		},
		{
			name: "a cancel during SendToExecutor cancels instead of executing",
			setup: func(h *harness) {
				h.onValidate(step(order.Validated), nil)
				h.signalDuring(h.onSend(step(order.SentToExecutor), nil), workflows.SignalCancel, cancelSignal)
			},
			cancelled: step(order.Cancelled),
			wantCalls: []string{"Validate", "SendToExecutor", "Cancel"},
		},
		{
			name: "a cancel while resting unfilled ends CANCELLED",
			setup: func(h *harness) {
				h.onValidate(step(order.Validated), nil)
				h.onSend(step(order.SentToExecutor), nil)
				h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
				h.signal(workflows.SignalCancel, cancelSignal, time.Minute)
			},
			cancelled: activities.StepResult{Status: order.Cancelled, Reason: order.ReasonCancelledByClient, Remaining: 5},
			wantCalls: []string{"Validate", "SendToExecutor", "Execute", "Cancel"},
		},
		{
			name: "a cancel while resting partly filled ends PARTIALLY_CANCELLED",
			setup: func(h *harness) {
				h.onValidate(step(order.Validated), nil)
				h.onSend(step(order.SentToExecutor), nil)
				h.onExecute(activities.ExecuteResult{StepResult: step(order.PartiallyFilled)}, nil)
				h.signal(workflows.SignalCancel, cancelSignal, time.Minute)
			},
			cancelled: activities.StepResult{Status: order.PartiallyCancelled, Reason: order.ReasonCancelledByClient, Remaining: 2},
			wantCalls: []string{"Validate", "SendToExecutor", "Execute", "Cancel"},
		},
		{
			name: "a cancel after a partial fill signal ends PARTIALLY_CANCELLED",
			setup: func(h *harness) {
				h.onValidate(step(order.Validated), nil)
				h.onSend(step(order.SentToExecutor), nil)
				h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
				h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, time.Minute)
				h.signal(workflows.SignalCancel, cancelSignal, 2*time.Minute)
			},
			cancelled: step(order.PartiallyCancelled),
			wantCalls: []string{"Validate", "SendToExecutor", "Execute", "Cancel"},
		},
		{
			name: "a cancel that loses the race to a fill ends EXECUTED",
			setup: func(h *harness) {
				h.onValidate(step(order.Validated), nil)
				h.onSend(step(order.SentToExecutor), nil)
				h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
				h.signal(workflows.SignalCancel, cancelSignal, time.Minute)
			},
			cancelled: step(order.Executed),
			wantCalls: []string{"Validate", "SendToExecutor", "Execute", "Cancel"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			h.env.OnActivity(h.a.Cancel, mock.Anything, activities.CancelInput{OrderID: orderID, RequestedBy: "api"}).
				Return(tc.cancelled, nil).Once()

			res := h.run()
			if res.Status != tc.cancelled.Status || res.Reason != tc.cancelled.Reason {
				t.Errorf("result = %+v, want what Cancel returned: %+v", res, tc.cancelled)
			}
			h.assertCalls(tc.wantCalls...)
		})
	}
}

func TestACancelDuringExecuteThatEndsTheOrderIsMoot(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.signalDuring(h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil),
		workflows.SignalCancel, workflows.CancelSignal{RequestedBy: "api"})

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestATransientActivityErrorIsRetried(t *testing.T) {
	h := newHarness(t)
	h.onValidate(activities.StepResult{}, errors.New("database unavailable"))
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "Validate", "SendToExecutor", "Execute")
}

func TestARejectedOrderEndsAtValidation(t *testing.T) {
	h := newHarness(t)
	h.onValidate(activities.StepResult{Status: order.Rejected, Reason: order.ReasonTickSize, Remaining: 10}, nil)

	res := h.run()
	if res.Status != order.Rejected || res.Reason != order.ReasonTickSize {
		t.Errorf("result = %+v, want REJECTED with %s", res, order.ReasonTickSize)
	}
	h.assertCalls("Validate")
}

func TestAPermanentActivityErrorFailsTheOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(h *harness, err error)
		wantCalls []string
		errType   string
	}{
		{
			name: "an invalid transition in Execute fails the order",
			setup: func(h *harness, err error) {
				h.onValidate(step(order.Validated), nil)
				h.onSend(step(order.SentToExecutor), nil)
				h.onExecute(activities.ExecuteResult{}, err)
			},
			wantCalls: []string{"Validate", "SendToExecutor", "Execute", "Fail"},
			errType:   activities.ErrTypeInvalidTransition,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cause := temporal.NewNonRetryableApplicationError("boom", tc.errType, nil)
			tc.setup(h, cause)
			h.env.OnActivity(h.a.Fail, mock.Anything, mock.MatchedBy(func(in activities.FailInput) bool {
				return in.OrderID == orderID && in.Reason != ""
			})).Return(activities.StepResult{Status: order.Failed, Reason: "boom"}, nil).Once()

			res := h.run()
			if res.Status != order.Failed || res.Reason != "boom" {
				t.Errorf("result = %+v, want what Fail returned: FAILED (boom)", res)
			}
			h.assertCalls(tc.wantCalls...)
		})
	}
}

func TestARetryableErrorTypeIsNotPermanent(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(activities.StepResult{}, temporal.NewApplicationError("stale version", "Stale"))
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "SendToExecutor", "Execute")
}

func TestARunForARestingOrderGoesStraightToWaiting(t *testing.T) {
	h := newHarness(t)
	// Validate is a no-op for an order past validation and reports where it stands;
	// Execute, a no-op too, reports the counterparties of its earlier match again.
	h.onValidate(step(order.Executing), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	var waiting order.Status
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.QueryStatus)
		if err == nil {
			err = v.Get(&waiting)
		}
		if err != nil {
			t.Errorf("query: %v", err)
		}
	}, time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 2*time.Minute)

	res := h.run()
	if waiting != order.Executing {
		t.Errorf("status while waiting = %q, want EXECUTING", waiting)
	}
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "Execute")
}

func TestARunForATerminalOrderEndsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.onValidate(activities.StepResult{Status: order.Cancelled, Reason: order.ReasonCancelledByClient}, nil)

	res := h.run()
	if res.Status != order.Cancelled || res.Reason != order.ReasonCancelledByClient {
		t.Errorf("result = %+v, want CANCELLED", res)
	}
	h.assertCalls("Validate")
}

func TestQueryStatusAnswersTheCurrentStatus(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	var seen []order.Status
	query := func() {
		v, err := h.env.QueryWorkflow(workflows.QueryStatus)
		var s order.Status
		if err == nil {
			err = v.Get(&s)
		}
		if err != nil {
			t.Errorf("query: %v", err)
		}
		seen = append(seen, s)
	}
	h.env.RegisterDelayedCallback(query, time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, 2*time.Minute)
	h.env.RegisterDelayedCallback(query, 3*time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 4*time.Minute)

	h.run()
	query()
	if want := []order.Status{order.Executing, order.PartiallyFilled, order.Executed}; !slices.Equal(seen, want) {
		t.Errorf("queried statuses %v, want %v", seen, want)
	}
}

func TestALongRestingRunContinuesAsNew(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	const fills = 500
	for i := range fills {
		h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, time.Duration(i+1)*time.Second)
	}
	h.forbidUnmocked()

	h.env.ExecuteWorkflow(workflows.OrderWorkflow, workflows.OrderInput{OrderID: orderID})
	if !h.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var can *workflow.ContinueAsNewError
	if err := h.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow error = %v, want continue-as-new after %d fill signals", err, fills)
	}
	var in workflows.OrderInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
		t.Fatalf("continue-as-new input: %v", err)
	}
	if in.OrderID != orderID {
		t.Errorf("continued as new for order %d, want %d", in.OrderID, orderID)
	}
	if in.Revision != workflows.CurrentRevision {
		t.Errorf("a run started at revision %d continued as new at revision %d, want the current %d",
			workflows.RevisionPerChange, in.Revision, workflows.CurrentRevision)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

// shortRetry gives up after two attempts, so a test reaches parking quickly.
var shortRetry = workflows.OrderInput{OrderID: orderID, Revision: workflows.CurrentRevision, Retry: workflows.RetryConfig{
	InitialInterval: time.Millisecond, MaximumInterval: time.Millisecond, MaximumAttempts: 2,
}}

func TestAStepThatExhaustsItsRetriesIsParkedUntilAnOperatorRetriesIt(t *testing.T) {
	h := newHarness(t)
	outage := errors.New("database unavailable")
	h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(activities.StepResult{}, outage).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.MatchedBy(func(in activities.StallInput) bool {
		return in.OrderID == orderID && in.Step == "Validate" && in.Error == "database unavailable" && in.Attempts == 2
	})).Return(step(order.Created), nil).Once()
	// The operator decides an hour later; nothing runs in between.
	h.signal(workflows.SignalRetry, workflows.RetrySignal{RequestedBy: "operator:test"}, time.Hour)
	h.env.OnActivity(h.a.Resume, mock.Anything, activities.ResumeInput{OrderID: orderID, Step: "Validate", RequestedBy: "operator:test"}).
		Return(step(order.Created), nil).Once()
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.runWith(shortRetry)
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED after the retry", res)
	}
	h.assertCalls("Validate", "Validate", "MarkStalled", "Resume", "Validate", "SendToExecutor", "Execute")
}

// A step that times out once is retried like any other failure, within its retry
// budget, instead of being parked at the first timeout (the SDK bounds a local activity's
// retries by its ScheduleToClose, which defaults to one StartToClose).
func TestAStepThatTimesOutOnceIsRetried(t *testing.T) {
	h := newHarness(t)
	var attempts atomic.Int32 // each attempt runs on a goroutine of its own
	h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(
		func(ctx context.Context, _ int64) (activities.StepResult, error) {
			if attempts.Add(1) == 1 {
				<-ctx.Done() // a stuck connection: the step's timeout ends it
				return activities.StepResult{}, ctx.Err()
			}
			return step(order.SentToExecutor), nil
		}).Times(2)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.runWith(workflows.OrderInput{OrderID: orderID, Revision: workflows.CurrentRevision, Retry: workflows.RetryConfig{
		InitialInterval: time.Millisecond, MaximumInterval: time.Millisecond, MaximumAttempts: 3, StepTimeout: 100 * time.Millisecond,
	}})
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED after the retry", res)
	}
	h.assertCalls("Validate", "Validate", "Execute")
}

func TestAnOperatorFailsAParkedOrder(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.env.OnActivity(h.a.SendToExecutor, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("timeout")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Validated), nil).Once()
	h.signal(workflows.SignalFail, workflows.FailSignal{Reason: "venue closed"}, time.Minute)
	h.env.OnActivity(h.a.Fail, mock.Anything, activities.FailInput{OrderID: orderID, Reason: "venue closed", RequestedBy: "operator"}).
		Return(activities.StepResult{Status: order.Failed, Reason: "venue closed"}, nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Failed || res.Reason != "venue closed" {
		t.Errorf("result = %+v, want FAILED with the operator's reason", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "SendToExecutor", "MarkStalled", "Fail")
}

func TestAParkedRunAppliesACancelWithoutWaitingForTheOperator(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("down")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Created), nil).Once()
	// A fill signal does not decide a parked order; a client's cancel does.
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, 30*time.Second)
	h.signal(workflows.SignalCancel, workflows.CancelSignal{RequestedBy: "client"}, time.Minute)
	h.env.OnActivity(h.a.Resume, mock.Anything, activities.ResumeInput{OrderID: orderID, Step: "Validate", RequestedBy: "client"}).
		Return(step(order.Created), nil).Once()
	h.env.OnActivity(h.a.Cancel, mock.Anything, activities.CancelInput{OrderID: orderID, RequestedBy: "client"}).
		Return(step(order.Cancelled), nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Cancelled {
		t.Errorf("result = %+v, want CANCELLED", res)
	}
	h.assertCalls("Validate", "Validate", "MarkStalled", "Resume", "Cancel")
}

func TestASweepDeeperThanOneStepContinuesInTheNextStep(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.env.OnActivity(h.a.Execute, mock.Anything, orderID).
		Return(activities.ExecuteResult{StepResult: step(order.PartiallyFilled), More: true}, nil).Twice()
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED after three steps", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute", "Execute", "Execute")
}

// A worker that dies after Execute committed loses the workflow task that ran it: the
// replayed steps are no-ops that report the order already executed. The run must still
// tell the resting orders it traded with, or their runs would wait forever.
func TestARunThatFindsItsOrderAlreadyMatchedStillNotifiesItsCounterparties(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Executed), nil)
	h.onExecute(activities.ExecuteResult{
		StepResult:     step(order.Executed),
		Counterparties: []activities.Counterparty{{OrderID: 7, RunKey: "k7", Status: order.Executed}},
	}, nil)
	h.env.OnSignalExternalWorkflow(mock.Anything, workflows.OrderWorkflowID(7, "k7"), "", workflows.SignalFill,
		workflows.FillSignal{Status: order.Executed}).Return(nil).Once()

	res := h.runPerChange()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "Execute")
}

func TestARunForAnOrderCancelledBeforeMatchingDoesNotExecute(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Cancelled), nil)
	if res := h.run(); res.Status != order.Cancelled {
		t.Errorf("result = %+v, want CANCELLED", res)
	}
	h.assertCalls("Validate")
}

// upsert is one search-attribute upsert of a run: the OrderStatus, NeedsAttention and
// UserId it set ("", nil and 0 where it set none).
type upsert struct {
	status    string
	attention *bool
	userID    int64
}

// recordUpserts records the run's upserts, in order.
func (h *harness) recordUpserts() *[]upsert {
	var got []upsert
	h.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		var u upsert
		u.status, _ = sa.GetKeyword(workflows.AttrOrderStatus)
		if v, ok := sa.GetBool(workflows.AttrNeedsAttention); ok {
			u.attention = &v
		}
		u.userID, _ = sa.GetInt64(workflows.AttrUserID)
		got = append(got, u)
	}).Return(nil)
	return &got
}

func described(s order.Status) activities.StepResult {
	return activities.StepResult{Status: s, UserID: 9, InstrumentID: 101, Side: order.Buy, Kind: order.Market, Quantity: 5}
}

// Each upsert is a visibility write on the server, so a run that goes from CREATED to
// EXECUTED in one workflow task upserts once, with where it ended; a run started before
// revisions keeps the upsert per change it recorded.
func TestSearchAttributesAreUpsertedOncePerWorkflowTask(t *testing.T) {
	for _, tc := range []struct {
		revision int
		want     []upsert
	}{
		{workflows.CurrentRevision, []upsert{{status: "EXECUTED", userID: 9}}},
		{workflows.RevisionPerChange, []upsert{{status: "VALIDATED", userID: 9}, {status: "SENT_TO_EXECUTOR"}, {status: "EXECUTED"}}},
	} {
		t.Run(fmt.Sprintf("revision %d", tc.revision), func(t *testing.T) {
			h := newHarness(t)
			got := h.recordUpserts()
			h.onValidate(described(order.Validated), nil)
			h.onSend(described(order.SentToExecutor), nil)
			h.onExecute(activities.ExecuteResult{StepResult: described(order.Executed)}, nil)
			if res := h.runWith(workflows.OrderInput{OrderID: orderID, Revision: tc.revision}); res.Status != order.Executed {
				t.Errorf("result = %+v, want EXECUTED", res)
			}
			if !slices.EqualFunc(*got, tc.want, func(a, b upsert) bool {
				return a.status == b.status && a.userID == b.userID && (a.attention == nil) == (b.attention == nil)
			}) {
				t.Errorf("upserts = %+v, want %+v", *got, tc.want)
			}
		})
	}
}

// A resting order's run shows where it rests before it waits, and each fill that changes
// its status before it waits again.
func TestARestingRunUpsertsBeforeEachWait(t *testing.T) {
	h := newHarness(t)
	got := h.recordUpserts()
	h.onValidate(described(order.Validated), nil)
	h.onSend(described(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: described(order.Executing)}, nil)
	var resting []upsert
	h.env.RegisterDelayedCallback(func() { resting = slices.Clone(*got) }, time.Second)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.PartiallyFilled}, time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 5*time.Minute)

	if res := h.run(); res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	if len(resting) != 1 || resting[0].status != "EXECUTING" || resting[0].userID != 9 {
		t.Errorf("upserts while resting = %+v, want one showing the order EXECUTING for user 9", resting)
	}
	var statuses []string
	for _, u := range *got {
		statuses = append(statuses, u.status)
	}
	if want := []string{"EXECUTING", "PARTIALLY_FILLED", "EXECUTED"}; !slices.Equal(statuses, want) {
		t.Errorf("upserted statuses %v, want %v", statuses, want)
	}
}

// A parked run must show NeedsAttention while it waits for the operator, not only when
// its workflow task ends.
func TestAParkedRunShowsNeedsAttentionBeforeItWaits(t *testing.T) {
	h := newHarness(t)
	got := h.recordUpserts()
	h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("database unavailable")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(activities.StepResult{}, nil).Once()
	var parked []upsert
	h.env.RegisterDelayedCallback(func() { parked = slices.Clone(*got) }, time.Minute)
	h.signal(workflows.SignalFail, workflows.FailSignal{Reason: "gave up"}, time.Hour)
	h.env.OnActivity(h.a.Fail, mock.Anything, mock.Anything).Return(activities.StepResult{Status: order.Failed}, nil).Once()

	if res := h.runWith(shortRetry); res.Status != order.Failed {
		t.Errorf("result = %+v, want FAILED", res)
	}
	if len(parked) != 1 || parked[0].attention == nil || !*parked[0].attention {
		t.Errorf("upserts while parked = %+v, want one setting NeedsAttention", parked)
	}
}

// In the current revision the Execute activity signals the counterparties once its
// transaction has committed; the run must not signal them again.
func TestACurrentRunLeavesFillSignalsToExecute(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{
		StepResult:     step(order.Executed),
		Counterparties: []activities.Counterparty{{OrderID: 7, Status: order.Executed}},
	}, nil)
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Run(func(mock.Arguments) { t.Error("the run signalled a counterparty itself") }).Return(nil).Maybe()

	if res := h.run(); res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

func TestARunCancelledFromTheUICancelsItsRestingOrder(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 5*time.Minute)
	// The cancel of the order runs on a context the run's cancellation does not reach.
	h.env.OnActivity(h.a.Cancel, mock.Anything, activities.CancelInput{OrderID: orderID, Reason: order.ReasonRunCancelled, RequestedBy: "temporal"}).
		Return(step(order.Cancelled), nil).Once()
	h.forbidUnmocked()
	h.env.ExecuteWorkflow(workflows.OrderWorkflow, workflows.OrderInput{OrderID: orderID, Revision: workflows.CurrentRevision})
	if !h.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := h.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Errorf("workflow error = %v, want the run to end cancelled", err)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute", "Cancel")
}

func TestARestingRunThatMissedItsFillSignalHealsOnItsRecheckTimer(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	// The fill's signal never comes; the order's row says it was filled.
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED, read back on the timer", res)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute", "Execute")
}

// A run whose order does not exist (a stray message for an id not yet used) or is not
// the run's (its id came back after a restore, with another run key) ends at once and
// touches nothing: no Fail, which would fail an order that is not its own.
func TestARunWithoutAnOrderOfItsOwnEndsTouchingNothing(t *testing.T) {
	for _, tc := range []struct {
		errType, reason string
	}{
		{activities.ErrTypeUnknownOrder, workflows.ReasonUnknownOrder},
		{activities.ErrTypeForeignRun, workflows.ReasonForeignRun},
	} {
		t.Run(tc.errType, func(t *testing.T) {
			h := newHarness(t)
			h.onValidate(activities.StepResult{}, temporal.NewNonRetryableApplicationError("not ours", tc.errType, nil))

			res := h.run()
			if res.Status != "" || res.Reason != tc.reason {
				t.Errorf("result = %+v, want no status and reason %s", res, tc.reason)
			}
			h.assertCalls("Validate")
		})
	}
}

// A resting run left over from another history of the database (a restore) finds on its
// recheck that the order with its id is not its own, and ends.
func TestAStrayRestingRunEndsOnItsRecheck(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	h.onExecute(activities.ExecuteResult{}, temporal.NewNonRetryableApplicationError("not ours", activities.ErrTypeForeignRun, nil))

	res := h.run()
	if res.Reason != workflows.ReasonForeignRun {
		t.Errorf("result = %+v, want reason %s", res, workflows.ReasonForeignRun)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute", "Execute")
}

// decide sends an operator's decision as an Update after the delay and records how the
// run answered it.
func (h *harness) decide(name string, arg any, after time.Duration) *decisionAnswer {
	a := &decisionAnswer{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, fmt.Sprintf("%s-%s", name, after), &testsuite.TestUpdateCallback{
			OnAccept: func() { a.accepted = true },
			OnReject: func(err error) { a.rejected = err },
			OnComplete: func(v any, err error) {
				a.completed, a.err = true, err
				if r, ok := v.(workflows.DecisionResult); ok {
					a.result = r
				}
			},
		}, arg)
	}, after)
	return a
}

type decisionAnswer struct {
	accepted, completed bool
	rejected, err       error
	result              workflows.DecisionResult
}

// A fail signal sent while the run was not parked must not decide a park that comes
// later: the run drops it (and the Update an operator's tools send is refused at once).
func TestAStaleFailSignalDoesNotDecideALaterPark(t *testing.T) {
	h := newHarness(t)
	h.signal(workflows.SignalFail, workflows.FailSignal{Reason: "stale"}, 0)
	h.onValidate(step(order.Validated), nil)
	h.env.OnActivity(h.a.SendToExecutor, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("timeout")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Validated), nil).Once()
	retried := h.decide(workflows.UpdateRetry, workflows.RetrySignal{RequestedBy: "operator:test"}, time.Hour)
	h.env.OnActivity(h.a.Resume, mock.Anything, activities.ResumeInput{OrderID: orderID, Step: "SendToExecutor", RequestedBy: "operator:test"}).
		Return(step(order.Validated), nil).Once()
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executed)}, nil)

	res := h.runWith(shortRetry)
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED after the operator's retry, not FAILED by the stale signal", res)
	}
	if !retried.accepted || !retried.completed || retried.err != nil || retried.result.Status != order.Validated {
		t.Errorf("the retry update: %+v, want accepted and completed once the run resumed (VALIDATED)", retried)
	}
	h.assertCalls("Validate", "SendToExecutor", "SendToExecutor", "MarkStalled", "Resume", "SendToExecutor", "Execute")
}

// A decision for a run that is not parked is refused by the Update's validator: it is
// neither applied nor kept for a later park.
func TestAnOperatorDecisionForARunThatIsNotParkedIsRefused(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	retry := h.decide(workflows.UpdateRetry, workflows.RetrySignal{}, time.Minute)
	fail := h.decide(workflows.UpdateFail, workflows.FailSignal{Reason: "no"}, 2*time.Minute)
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 3*time.Minute)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED", res)
	}
	for name, a := range map[string]*decisionAnswer{"retry": retry, "fail": fail} {
		if a.accepted || a.rejected == nil || !strings.Contains(a.rejected.Error(), "not parked") {
			t.Errorf("%s update: %+v, want rejected as not parked", name, a)
		}
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute")
}

// An operator's fail, sent as an Update, is answered once the order has ended FAILED.
func TestAnOperatorFailsAParkedOrderByUpdate(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.env.OnActivity(h.a.SendToExecutor, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("timeout")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Validated), nil).Once()
	failed := h.decide(workflows.UpdateFail, workflows.FailSignal{Reason: "venue closed", RequestedBy: "operator:api"}, time.Minute)
	h.env.OnActivity(h.a.Fail, mock.Anything, activities.FailInput{OrderID: orderID, Reason: "venue closed", RequestedBy: "operator:api"}).
		Return(activities.StepResult{Status: order.Failed, Reason: "venue closed"}, nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Failed || res.Reason != "venue closed" {
		t.Errorf("result = %+v, want FAILED with the operator's reason", res)
	}
	if !failed.completed || failed.err != nil || failed.result.Status != order.Failed {
		t.Errorf("the fail update: %+v, want completed with FAILED", failed)
	}
	h.assertCalls("Validate", "SendToExecutor", "SendToExecutor", "MarkStalled", "Fail")
}

// The recheck of a resting order is a step like any other: when it parks, an operator's
// fail ends the order, rather than being dropped with the run waiting on.
func TestAnOperatorFailsARestingOrderWhoseRecheckParked(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.Validated), nil)
	h.onSend(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	h.env.OnActivity(h.a.Execute, mock.Anything, orderID).Return(activities.ExecuteResult{}, errors.New("database unavailable")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Executing), nil).Once()
	failed := h.decide(workflows.UpdateFail, workflows.FailSignal{Reason: "venue closed", RequestedBy: "operator:api"}, 11*time.Minute)
	h.env.OnActivity(h.a.Fail, mock.Anything, activities.FailInput{OrderID: orderID, Reason: "venue closed", RequestedBy: "operator:api"}).
		Return(activities.StepResult{Status: order.Failed, Reason: "venue closed"}, nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Failed {
		t.Errorf("result = %+v, want FAILED by the operator", res)
	}
	if !failed.completed || failed.err != nil || failed.result.Status != order.Failed {
		t.Errorf("the fail update: %+v, want completed with FAILED", failed)
	}
	h.assertCalls("Validate", "SendToExecutor", "Execute", "Execute", "Execute", "MarkStalled", "Fail")
}

// Cancelling a parked run from the Temporal UI cancels its order, as for any other run,
// on a context the cancellation does not reach (the Cancel step unparks the order).
func TestCancellingAParkedRunFromTheUICancelsItsOrder(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(h.a.Validate, mock.Anything, orderID).Return(activities.StepResult{}, errors.New("down")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Created), nil).Once()
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 30*time.Minute)
	refused := h.decide(workflows.UpdateRetry, workflows.RetrySignal{}, 31*time.Minute)
	h.env.OnActivity(h.a.Cancel, mock.Anything, activities.CancelInput{OrderID: orderID, Reason: order.ReasonRunCancelled, RequestedBy: "temporal"}).
		Return(step(order.Cancelled), nil).Once()
	h.forbidUnmocked()
	h.env.ExecuteWorkflow(workflows.OrderWorkflow, shortRetry)
	if !h.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := h.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Errorf("workflow error = %v, want the run to end cancelled", err)
	}
	h.assertCalls("Validate", "Validate", "MarkStalled", "Cancel")
	if refused.accepted {
		t.Errorf("a retry after the run was cancelled was accepted: %+v", refused)
	}
}

// amend sends a client's amendment as an Update after the delay and records how the run
// answered it.
func (h *harness) amend(req workflows.AmendRequest, after time.Duration) *amendAnswer {
	a := &amendAnswer{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(workflows.UpdateAmend, fmt.Sprintf("amend-%s", after), &testsuite.TestUpdateCallback{
			OnAccept: func() { a.accepted = true },
			OnReject: func(err error) { a.rejected = err },
			OnComplete: func(v any, err error) {
				a.completed, a.err = true, err
				if r, ok := v.(activities.AmendResult); ok {
					a.result = r
				}
			},
		}, req)
	}, after)
	return a
}

type amendAnswer struct {
	accepted, completed bool
	rejected, err       error
	result              activities.AmendResult
}

// A resting run applies an amendment between fills and answers it once applied; an
// amendment in place leaves the order resting, and the run waits on for its fills.
func TestARestingRunAppliesAnAmendmentAndWaitsOn(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	amended := h.amend(workflows.AmendRequest{Quantity: 5, RequestedBy: "user:7"}, time.Minute)
	h.env.OnActivity(h.a.Amend, mock.Anything, activities.AmendInput{OrderID: orderID, AmendID: "amend-1m0s", Quantity: 5, RequestedBy: "user:7"}).
		Return(activities.AmendResult{StepResult: step(order.Executing), Outcome: orderbook.AmendedInPlace, Version: 4}, nil).Once()
	h.signal(workflows.SignalFill, workflows.FillSignal{Status: order.Executed}, 2*time.Minute)

	res := h.run()
	if res.Status != order.Executed {
		t.Errorf("result = %+v, want EXECUTED by the fill after the amendment", res)
	}
	if !amended.accepted || !amended.completed || amended.err != nil || amended.result.Outcome != orderbook.AmendedInPlace || amended.result.Version != 4 {
		t.Errorf("the amend update: %+v, want completed AMENDED at version 4", amended)
	}
	h.assertCalls("Validate", "Execute", "Amend")
}

// An amendment that replaces the order ends its run: the order has ended REPLACED, and
// the replacement has a run of its own.
func TestAnAmendmentThatReplacesTheOrderEndsItsRun(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.PartiallyFilled)}, nil)
	replaced := h.amend(workflows.AmendRequest{Price: "99.5"}, time.Minute)
	h.env.OnActivity(h.a.Amend, mock.Anything, mock.Anything).Return(activities.AmendResult{
		StepResult: activities.StepResult{Status: order.PartiallyCancelled, Reason: order.ReasonReplaced},
		Outcome:    orderbook.AmendReplaced, ReplacementID: 2,
	}, nil).Once()

	res := h.run()
	if res.Status != order.PartiallyCancelled || res.Reason != order.ReasonReplaced {
		t.Errorf("result = %+v, want PARTIALLY_CANCELLED (REPLACED)", res)
	}
	if !replaced.completed || replaced.err != nil || replaced.result.ReplacementID != 2 {
		t.Errorf("the amend update: %+v, want completed with replacement 2", replaced)
	}
	h.assertCalls("Validate", "Execute", "Amend")
	// The Amend step is a regular activity, scheduled in the workflow task that accepts the
	// Update, so it runs only once the acceptance is in the history. As a local activity it
	// ran inside that task: when the server refused the task's completion (a fill's signal
	// came in meanwhile: UnhandledCommand), the Update was dropped with it while its
	// replacement stood committed, the API answered 503 "nothing was amended", and the run
	// went back to waiting for an order that had ended (found by the cluster's chaos run).
	if !slices.Equal(h.regular, []string{"Amend"}) {
		t.Errorf("regular activities %v, want [Amend]", h.regular)
	}
}

// An amendment is refused before it reaches the order unless the run rests on the book:
// while it is parked, it is refused and nothing is kept for later.
func TestAnAmendmentOfARunThatIsNotRestingIsRefused(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.SentToExecutor), nil)
	h.env.OnActivity(h.a.Execute, mock.Anything, orderID).Return(activities.ExecuteResult{}, errors.New("timeout")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.SentToExecutor), nil).Once()
	parked := h.amend(workflows.AmendRequest{Quantity: 1}, time.Minute)
	h.decide(workflows.UpdateFail, workflows.FailSignal{Reason: "venue closed"}, 2*time.Minute)
	h.env.OnActivity(h.a.Fail, mock.Anything, mock.Anything).Return(activities.StepResult{Status: order.Failed, Reason: "venue closed"}, nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Failed {
		t.Errorf("result = %+v, want FAILED", res)
	}
	if parked.accepted || parked.rejected == nil || !strings.Contains(parked.rejected.Error(), "not resting") {
		t.Errorf("the amend update: %+v, want rejected as not resting", parked)
	}
	h.assertCalls("Validate", "Execute", "Execute", "MarkStalled", "Fail")
}

// An amendment whose step parks and is then failed by an operator is answered as
// uncertain, not refused: an attempt may have committed before its answer was lost.
func TestAnAmendmentWhoseStepFailsIsAnsweredUncertain(t *testing.T) {
	h := newHarness(t)
	h.onValidate(step(order.SentToExecutor), nil)
	h.onExecute(activities.ExecuteResult{StepResult: step(order.Executing)}, nil)
	amended := h.amend(workflows.AmendRequest{Quantity: 1}, time.Minute)
	h.env.OnActivity(h.a.Amend, mock.Anything, mock.Anything).Return(activities.AmendResult{}, errors.New("timeout")).Times(2)
	h.env.OnActivity(h.a.MarkStalled, mock.Anything, mock.Anything).Return(step(order.Executing), nil).Once()
	h.decide(workflows.UpdateFail, workflows.FailSignal{Reason: "venue closed"}, time.Hour)
	h.env.OnActivity(h.a.Fail, mock.Anything, mock.Anything).Return(activities.StepResult{Status: order.Failed, Reason: "venue closed"}, nil).Once()

	res := h.runWith(shortRetry)
	if res.Status != order.Failed {
		t.Errorf("result = %+v, want FAILED by the operator", res)
	}
	var appErr *temporal.ApplicationError
	if !amended.accepted || !amended.completed || !errors.As(amended.err, &appErr) || appErr.Type() != workflows.ErrTypeAmendUncertain {
		t.Errorf("the amend update: %+v, want completed with an %s error", amended, workflows.ErrTypeAmendUncertain)
	}
	h.assertCalls("Validate", "Execute", "Amend", "Amend", "MarkStalled", "Fail")
}
