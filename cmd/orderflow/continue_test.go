package main

import (
	"context"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// A resting order's run that has taken its bound of signals continues as new, and the
// new run carries on: it takes the fill that ends the order. Its histories, the closed
// link of the chain and the open one, are recorded for the replay test.
func TestALongRestingRunContinuesAsNewAndStillTakesItsFill(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	buy := s.mustPlace(t, limit(1, inst, "BUY", "10", 2))
	s.waitStatus(t, buy, "EXECUTING")
	wid := s.get(t, buy).WorkflowID
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firstRun := s.signalPastRunBound(ctx, t, wid)
	var next string
	for next == "" {
		d, err := s.temporal.DescribeWorkflowExecution(ctx, wid, "")
		if err != nil {
			t.Fatal(err)
		}
		if id := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); id != firstRun {
			next = id
		} else if ctx.Err() != nil {
			t.Fatal("the run did not continue as new after 500 signals")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	old, err := s.temporal.DescribeWorkflowExecution(ctx, wid, firstRun)
	if err != nil || old.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
		t.Fatalf("the first run: %v, %v; want ContinuedAsNew", old.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	s.recordOpenHistory(t, wid, firstRun, "continued_first")
	s.recordOpenHistory(t, wid, next, "continued_open")

	sell := s.mustPlace(t, market(2, inst, "SELL", 2))
	s.waitStatus(t, sell, "EXECUTED")
	s.waitStatus(t, buy, "EXECUTED")
	var res workflows.OrderResult
	if err := s.temporal.GetWorkflow(ctx, wid, "").Get(ctx, &res); err != nil || res.Status != order.Executed {
		t.Errorf("the continued run ended with %+v, %v; want EXECUTED", res, err)
	}
	s.checkInvariants(t, []int64{buy, sell})
}

// signalPastRunBound sends the resting run of workflow wid more fill signals than a run
// takes before it continues as new, and returns that run's id. Fill signals that change
// nothing (the status the run knows) still count.
func (s *stack) signalPastRunBound(ctx context.Context, t *testing.T, wid string) string {
	t.Helper()
	first, err := s.temporal.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		t.Fatal(err)
	}
	run := first.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for range 500 {
		g.Go(func() error {
			return s.temporal.SignalWorkflow(gctx, wid, run, workflows.SignalFill, workflows.FillSignal{Status: order.Executing})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return run
}
