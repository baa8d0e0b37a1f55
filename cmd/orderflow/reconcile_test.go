package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
)

// terminate terminates the order's run, as an operator can from the Temporal UI, and
// returns the run id it had.
func (s *stack) terminate(t *testing.T, id int64) (wid, runID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wid = s.get(t, id).WorkflowID
	d, err := s.temporal.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		t.Fatal(err)
	}
	runID = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if err := s.temporal.TerminateWorkflow(ctx, wid, runID, "operator test"); err != nil {
		t.Fatal(err)
	}
	return wid, runID
}

// waitNewRun waits until the order's workflow has a running run other than old.
func (s *stack) waitNewRun(t *testing.T, wid, old string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := s.temporal.DescribeWorkflowExecution(context.Background(), wid, "")
		if err == nil {
			info := d.GetWorkflowExecutionInfo()
			if info.GetExecution().GetRunId() != old && info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no new running run after 30s (last: %v, %v)", wid, d.GetWorkflowExecutionInfo().GetStatus(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A resting order whose run an operator terminated is given a new run by the worker's
// reconciler, which then takes its fill and ends it.
func TestTheReconcilerGivesATerminatedRunsRestingOrderANewRun(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	buy := s.mustPlace(t, limit(1, inst, "BUY", "10", 3))
	s.waitStatus(t, buy, "EXECUTING")
	wid, old := s.terminate(t, buy)
	s.waitNewRun(t, wid, old)

	sell := s.mustPlace(t, market(2, inst, "SELL", 3))
	s.waitStatus(t, sell, "EXECUTED")
	s.waitStatus(t, buy, "EXECUTED")
	var res struct{ Status string }
	if err := s.temporal.GetWorkflow(context.Background(), wid, "").Get(context.Background(), &res); err != nil || res.Status != "EXECUTED" {
		t.Errorf("the new run ended with %+v, %v; want EXECUTED", res, err)
	}
	s.checkInvariants(t, []int64{buy, sell})
}

// A cancel of an order whose run was terminated gets the order a run that applies it,
// and says so: never a 202 that nothing will honour.
func TestCancellingAnOrderWhoseRunWasTerminatedCancelsIt(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.mustPlace(t, limit(1, inst, "SELL", "30", 2))
	s.waitStatus(t, id, "EXECUTING")
	s.terminate(t, id)

	if code, v := s.cancel(t, id); code != http.StatusOK || v.OrderStatus != "CANCELLED" {
		t.Fatalf("cancel = %d %s, want 200 CANCELLED", code, v.OrderStatus)
	}
	s.checkInvariants(t, []int64{id})
}

// `orderflow orders reconcile --all` starts a run for an open order that never had one
// (the periodic pass looks only at closed runs), as after a restore. Not parallel: --all
// looks at every open order, and other tests' orders without a run must not get one.
func TestOrdersReconcileAllStartsARunForAnOpenOrderWithNone(t *testing.T) {
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.insertWithoutOutbox(t, 1, inst)
	out := s.command(t, "orders", "reconcile", "--all")
	if !strings.Contains(out, fmt.Sprintf("order %d (CREATED): started a new run order-%d\n", id, id)) || !strings.Contains(out, "reconciled: ") {
		t.Fatalf("orders reconcile --all printed:\n%s", out)
	}
	s.waitStatus(t, id, "EXECUTING")
	if again := s.command(t, "orders", "reconcile", "--all"); strings.Contains(again, fmt.Sprintf("order %d ", id)) {
		t.Errorf("a second pass started another run:\n%s", again)
	}
	s.checkInvariants(t, []int64{id})
}
