package main

import (
	"context"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// gtd is a GTD LIMIT order body expiring at at.
func gtd(user, instrument int64, side, price string, qty int64, at time.Time) map[string]any {
	b := limit(user, instrument, side, price, qty)
	b["timeInForce"], b["expireAt"] = "GTD", at.UTC().Format(time.RFC3339Nano)
	return b
}

// A GTD order rests, then its run's timer ends it EXPIRED at its expiry, long before any
// recheck would, and the run ends with it.
func TestAGTDOrderExpiresByItsRunsTimer(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	at := time.Now().Add(3 * time.Second)
	id := s.mustPlace(t, gtd(1, inst, "BUY", "10", 2, at))
	s.waitStatus(t, id, "EXECUTING")
	v := s.waitStatus(t, id, "EXPIRED")
	if v.Reason != order.ReasonExpiredGTD {
		t.Errorf("reason %q, want %s", v.Reason, order.ReasonExpiredGTD)
	}
	if late := time.Since(at); late < 0 || late > 20*time.Second {
		t.Errorf("expired %v after its expiry, want within seconds", late)
	}
	var res workflows.OrderResult
	if err := s.temporal.GetWorkflow(context.Background(), v.WorkflowID, "").Get(context.Background(), &res); err != nil || res.Status != order.Expired {
		t.Errorf("the run ended with %+v, %v; want EXPIRED", res, err)
	}
	s.checkInvariants(t, []int64{id})
}

// A run that continued as new sets the timer again from its first step's result.
func TestAGTDOrderExpiresAfterItsRunContinuedAsNew(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	at := time.Now().Add(25 * time.Second)
	id := s.mustPlace(t, gtd(1, inst, "BUY", "10", 2, at))
	s.waitStatus(t, id, "EXECUTING")
	wid := s.get(t, id).WorkflowID
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firstRun := s.signalPastRunBound(ctx, t, wid)
	eventually(t, time.Minute, "the run to continue as new", func() bool {
		d, err := s.temporal.DescribeWorkflowExecution(ctx, wid, firstRun)
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
	})
	if time.Now().After(at) {
		t.Fatal("the run continued as new only after the order's expiry: the test proves nothing")
	}
	v := s.waitStatus(t, id, "EXPIRED")
	if late := time.Since(at); v.Reason != order.ReasonExpiredGTD || late > 20*time.Second {
		t.Errorf("expired with reason %q %v after its expiry; want %s within seconds", v.Reason, late, order.ReasonExpiredGTD)
	}
}

// The timer is Temporal's, not the worker's: with no worker at the expiry, the next one
// expires the order.
func TestAGTDOrderExpiresAcrossAWorkerRestart(t *testing.T) {
	t.Parallel()
	d := newDrainSystem(t)
	w := d.startWorker(t, "worker-1", 15*time.Second)
	at := time.Now().Add(8 * time.Second)
	id := d.mustPlace(t, gtd(1, 101, "BUY", "10", 2, at))
	d.waitStatus(t, id, "EXECUTING")
	since := w.terminate(t)
	w.waitExit(t, since, 20*time.Second)
	eventually(t, 30*time.Second, "the order's expiry to pass with no worker running", func() bool { return time.Now().After(at.Add(time.Second)) })
	if st := d.get(t, id).OrderStatus; st != "EXECUTING" {
		t.Fatalf("order %d is %s with no worker running, want still EXECUTING", id, st)
	}
	d.startWorker(t, "worker-2", 15*time.Second)
	v := d.waitStatus(t, id, "EXPIRED")
	if v.Reason != order.ReasonExpiredGTD {
		t.Errorf("reason %q, want %s", v.Reason, order.ReasonExpiredGTD)
	}
}
