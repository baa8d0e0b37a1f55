package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/workflows"
)

// A shape is the skeleton of an order's run with no database behind it: what the Temporal
// server does for one order, without the order. Measuring each shape's server CPU on the
// same server as the ceiling says what an order costs the engine and why: the ratio of
// the end-to-end rate to the engine ceiling can be no better than the ratio of the
// empty workflow's cost to the mix's average shape cost.
type shape struct {
	Name    string
	LAs     int  // local activities in the first workflow task (Validate, Execute)
	Attrs   bool // the order's search attributes at start, and OrderStatus upserted in every task; needed by Wakeups
	Wakeups int  // signals the run waits for after its first task, as a resting order waits for a fill or a cancel
	// Recheck makes each wait what a resting order's wait is since its runs read their
	// order back on a timer: a workflow.GetVersion marker, and a timer raced against the
	// signal and cancelled when the signal wins.
	Recheck bool
}

// shapes are the shapes measured, cheapest first.
var shapes = []shape{
	{Name: "empty workflow (the ceiling's)"},
	{Name: "order that ends in its first task (market, crossing limit, rejected)", LAs: 2, Attrs: true},
	{Name: "order that rests, then one fill or cancel ends it", LAs: 2, Attrs: true, Wakeups: 1},
	{Name: "the same, with the resting recheck (version marker, timer started and cancelled)", LAs: 2, Attrs: true, Wakeups: 1, Recheck: true},
}

// ShapeCost is the Temporal server's CPU per run of one shape.
type ShapeCost struct {
	Name     string  `json:"name"`
	Runs     int     `json:"runs"`
	CPUMsRun float64 `json:"cpu_ms_per_run"`
}

// shapeWorkflowName is the registered name of shapeWorkflow.
const shapeWorkflowName = "OrderFlowBenchShape"

// shapeSignal is the signal a shape's run waits for, as an order run waits for fills.
const shapeSignal = "wake"

// waitingStatus is the OrderStatus a shape's run upserts before it waits for wake-up
// round: the bench counts runs with it to know when they all wait.
func waitingStatus(round int) string { return fmt.Sprintf("BENCH_WAITING_%d", round) }

// shapeStep stands in for a lifecycle step: a local activity that does nothing.
func shapeStep(_ context.Context, n int) (int, error) { return n + 1, nil }

// shapeWorkflow runs a shape. waiting, if not nil, is called each time the run is about to
// wait for a signal, and as a run that waited ends (waitNotices).
func shapeWorkflow(ctx workflow.Context, s shape, waiting func(workflow.Context)) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	for i := range s.LAs {
		if err := workflow.ExecuteLocalActivity(lctx, shapeStep, i).Get(ctx, nil); err != nil {
			return err
		}
	}
	wake := workflow.GetSignalChannel(ctx, shapeSignal)
	for round := range s.Wakeups {
		_ = workflow.UpsertTypedSearchAttributes(ctx, workflows.AttrOrderStatus.ValueSet(waitingStatus(round)))
		if waiting != nil {
			waiting(ctx)
		}
		if !s.Recheck {
			wake.Receive(ctx, nil)
			continue
		}
		_ = workflow.GetVersion(ctx, "bench-resting-recheck", workflow.DefaultVersion, 1)
		timerCtx, stop := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddFuture(workflow.NewTimer(timerCtx, 10*time.Minute), func(workflow.Future) {})
		sel.Select(ctx)
		stop()
	}
	if s.Attrs {
		_ = workflow.UpsertTypedSearchAttributes(ctx, workflows.AttrOrderStatus.ValueSet("EXECUTED"))
	}
	if waiting != nil && s.Wakeups > 0 {
		waiting(ctx) // and once more as it ends
	}
	return nil
}

// EngineShapes measures the Temporal server's CPU per run of each shape: runs of it,
// concurrency at a time, on a worker in this process, until the server has recorded them
// all closed. serverCPU returns the server's CPU seconds so far (false if it cannot be
// read, which skips the measurement).
func EngineShapes(ctx context.Context, c client.Client, runID string, runs, concurrency int, serverCPU func() (float64, bool)) ([]ShapeCost, error) {
	queue := "orderflow-bench-shapes-" + runID
	w := worker.New(c, queue, worker.Options{WorkflowTaskPollerBehavior: workflows.WorkflowTaskPollers()})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, s shape) error { return shapeWorkflow(ctx, s, nil) },
		workflow.RegisterOptions{Name: shapeWorkflowName})
	w.RegisterActivity(shapeStep)
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("bench: shapes worker: %w", err)
	}
	defer w.Stop()

	var out []ShapeCost
	var closed int64 // runs of earlier shapes, closed on the same queue
	for i, s := range shapes {
		before, ok := serverCPU()
		if !ok {
			return nil, nil
		}
		if err := runShape(ctx, c, queue, fmt.Sprintf("bench-shape-%s-%d", runID, i), s, runs, concurrency); err != nil {
			return out, fmt.Errorf("bench: shape %q: %w", s.Name, err)
		}
		closed += int64(runs)
		if err := waitVisible(ctx, c, queue, closed); err != nil {
			return out, fmt.Errorf("bench: shape %q: %w", s.Name, err)
		}
		after, _ := serverCPU()
		out = append(out, ShapeCost{Name: s.Name, Runs: runs, CPUMsRun: round2((after - before) / float64(runs) * 1000)})
	}
	return out, nil
}

// startOptions start run n of shape s as the consumer starts an order's run: eagerly,
// with the order's search attributes if the shape has them.
func startOptions(id, queue string, s shape, n int64) client.StartWorkflowOptions {
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: queue, EnableEagerStart: true, WorkflowRunTimeout: time.Minute}
	if s.Attrs {
		// What the consumer sets at start (workflows.startOptions), with negative ids so
		// that an operator's filter on a real order, user or instrument never finds them.
		opts.TypedSearchAttributes = workflows.StartSearchAttributes(workflows.StartRequest{
			OrderID: -n, UserID: -1, InstrumentID: -1, Side: "BUY", Kind: "LIMIT"})
	}
	return opts
}

// runShape starts runs of s and waits for their results, waking each once it waits.
func runShape(ctx context.Context, c client.Client, queue, idPrefix string, s shape, runs, concurrency int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	all := func(op func(i int) error) error {
		var next atomic.Int64
		var once sync.Once
		var firstErr error
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < runs && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
					if err := op(i); err != nil {
						once.Do(func() { firstErr = err; cancel() })
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr == nil {
			firstErr = ctx.Err()
		}
		return firstErr
	}
	id := func(i int) string { return fmt.Sprintf("%s-%d", idPrefix, i) }
	handles := make([]client.WorkflowRun, runs)
	err := all(func(i int) error {
		run, err := c.ExecuteWorkflow(ctx, startOptions(id(i), queue, s, int64(i+1)), shapeWorkflowName, s)
		if err != nil {
			return err
		}
		handles[i] = run
		if s.Wakeups == 0 {
			return run.Get(ctx, nil)
		}
		return nil
	})
	if err != nil || s.Wakeups == 0 {
		return err
	}
	for round := range s.Wakeups {
		// A signal that reached a run before it waited would be folded into its first
		// task: wait until every run has said, through visibility, that it waits.
		if err := waitWaiting(ctx, c, queue, runs, round); err != nil {
			return err
		}
		if err := all(func(i int) error { return c.SignalWorkflow(ctx, id(i), "", shapeSignal, nil) }); err != nil {
			return err
		}
	}
	return all(func(i int) error { return handles[i].Get(ctx, nil) })
}

// waitWaiting waits until n runs of queue show that they wait for wake-up round.
func waitWaiting(ctx context.Context, c client.Client, queue string, n, round int) error {
	return untilVisible(ctx, c, fmt.Sprintf("%d runs were not all waiting", n),
		func(count func(query string) (int64, error)) (bool, error) {
			waiting, err := count(fmt.Sprintf("TaskQueue = %q AND OrderStatus = %q", queue, waitingStatus(round)))
			return waiting >= int64(n), err
		})
}
