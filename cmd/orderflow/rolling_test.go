package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/workflows"
)

// rollingWorker is one generation's worker on the test's own task queue.
func (s *stack) rollingWorker(t *testing.T, queue, identity string, wf any) worker.Worker {
	t.Helper()
	w := worker.New(s.temporal, queue, worker.Options{Identity: identity, StickyScheduleToStartTimeout: time.Second})
	w.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "OrderWorkflow"})
	book := orderbook.New(s.pool, nil, orderbook.Config{})
	w.RegisterActivity(activities.New(book, nil, workflows.NewStarter(s.temporal, workflows.RetryConfig{})))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return w
}

// rollingOrder writes an order as the API does, without the outbox message (the test
// starts its run itself, on its own task queue), and starts its run there.
func (s *stack) rollingOrder(t *testing.T, queue string, user, inst int64, side, price string, qty int64) (int64, string) {
	t.Helper()
	ctx := context.Background()
	kind, tif := "LIMIT", "GTC"
	var p any = price
	if price == "" {
		kind, tif, p = "MARKET", "IOC", nil
	}
	var id int64
	var key string
	err := s.pool.QueryRow(ctx, `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
		                    status, time_in_force, idempotency_key, request_hash, run_key)
		VALUES ($1, $2, $3, $4, $5::numeric, $6, $6, 'CREATED', $7, 'rolling-' || gen_random_uuid(), 'x',
		        replace(left(gen_random_uuid()::text, 13), '-', ''))
		RETURNING id, run_key`, user, inst, side, kind, p, qty, tif).Scan(&id, &key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO order_events (order_id, seq, event_type, to_status)
		VALUES ($1, 1, 'ORDER_PLACED', 'CREATED')`, id); err != nil {
		t.Fatal(err)
	}
	wid := workflows.OrderWorkflowID(id, key)
	if _, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: queue}, workflows.OrderWorkflow,
		workflows.OrderInput{OrderID: id, Revision: workflows.CurrentRevision}); err != nil {
		t.Fatal(err)
	}
	return id, wid
}

// A rolling deploy from today's OrderWorkflow to a changed one: the old generation's
// worker alone, then both side by side, then the new one alone, while orders rest, fill
// and are cancelled across the three phases. Every order ends as it would have without
// the deploy, and every run's history replays deterministically on the new code.
func TestARollingDeployRunsOldAndNewWorkersSideBySide(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	queue := fmt.Sprintf("rolling-deploy-%d", inst)
	var ids []int64
	var wids []string
	add := func(id int64, wid string) { ids, wids = append(ids, id), append(wids, wid) }

	old := s.rollingWorker(t, queue, "old", workflows.OrderWorkflow)
	var resting []int64
	for i := range 6 { // phase 1: the old release alone rests buys
		id, wid := s.rollingOrder(t, queue, 1, inst, "BUY", fmt.Sprintf("%d", 10+i), 2)
		add(id, wid)
		resting = append(resting, id)
	}
	for _, id := range resting {
		s.waitStatus(t, id, "EXECUTING")
	}

	newer := s.rollingWorker(t, queue, "new", changedOrderWorkflow)
	defer newer.Stop()
	for range 3 { // phase 2: side by side, sells fill the best buys
		id, wid := s.rollingOrder(t, queue, 2, inst, "SELL", "", 2)
		add(id, wid)
		s.waitStatus(t, id, "EXECUTED")
	}
	old.Stop()
	for range 2 { // phase 3: the new release alone, with the old release's resting runs
		id, wid := s.rollingOrder(t, queue, 3, inst, "SELL", "", 1)
		add(id, wid)
		s.waitStatus(t, id, "EXECUTED")
	}
	for _, id := range resting {
		if v := s.get(t, id); !order.Status(v.OrderStatus).Terminal() {
			if code, _ := s.cancel(t, id); code != 200 {
				t.Errorf("cancel of resting order %d = %d, want 200", id, code)
			}
		}
	}

	// Every run closed by itself, and its history replays on the new code.
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(changedOrderWorkflow, workflow.RegisterOptions{Name: "OrderWorkflow"})
	var marked, continuedByNew, refused int
	for _, wid := range wids {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var res workflows.OrderResult
		err := s.temporal.GetWorkflow(ctx, wid, "").Get(ctx, &res)
		cancel()
		if err != nil || !res.Status.Terminal() {
			t.Errorf("run %s ended with %+v, %v; want the order's terminal status", wid, res, err)
			continue
		}
		h := s.history(t, wid)
		if err := replayer.ReplayWorkflowHistory(nil, h); err != nil {
			t.Errorf("the history of %s does not replay on the new code: %v", wid, err)
		}
		hasMarker, byNew := false, false
		for _, e := range h.GetEvents() {
			if m := e.GetMarkerRecordedEventAttributes(); m.GetMarkerName() == "Version" &&
				strings.Contains(m.GetDetails()["change-id"].String(), rollingChange) {
				hasMarker = true
			}
			if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED && e.GetWorkflowTaskCompletedEventAttributes().GetIdentity() == "new" {
				byNew = true
			}
			// An old worker handed a run of the new release fails the task, and the
			// task goes to another worker; that is the deploy working, not a fault.
			if e.GetWorkflowTaskFailedEventAttributes().GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR {
				refused++
			}
		}
		if hasMarker {
			marked++
		} else if byNew {
			continuedByNew++
		}
	}
	t.Logf("%d runs started by the new release, %d old runs carried on by it, %d workflow tasks an old worker refused",
		marked, continuedByNew, refused)
	// Both directions of the deploy happened: runs the new code started with its change,
	// and runs the old code started that the new code carried on without it.
	if marked == 0 || continuedByNew == 0 {
		t.Errorf("%d runs started by the new release, %d old runs carried on by it; want some of each", marked, continuedByNew)
	}
	s.checkInvariants(t, ids)
}

// history is the whole history of the workflow's latest run.
func (s *stack) history(t *testing.T, wid string) *historypb.History {
	t.Helper()
	var h historypb.History
	it := s.temporal.GetWorkflowHistory(context.Background(), wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	return &h
}
