package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/workflows"
)

// MixClass is how many of the load's orders took one shape of run: ended in their first
// task (Rests false), or rested on the book and were then woken Wakeups times (a fill
// that changed their status, or a cancel) before the load ended. Those woken more than
// maxMixWakeups times are counted at maxMixWakeups.
type MixClass struct {
	Rests   bool `json:"rests"`
	Wakeups int  `json:"wakeups"`
	Orders  int  `json:"orders"`
}

// wakeTimeout bounds the wait for a woken run to wait again or end.
const wakeTimeout = 30 * time.Second

// maxMixWakeups bounds the wake-ups of a class: beyond it, orders are rare.
const maxMixWakeups = 3

// mixQuery classifies orders by the shape their runs took, from their timelines. Events
// written by one transaction share its created_at, so the transaction that first moved an
// order into EXECUTING is its Execute step: the order rested if that step left it
// EXECUTING or PARTIALLY_FILLED, and each later transaction that changed its status (a fill
// by another order's step, or its cancel) is a signal its run woke for.
const mixQuery = `
WITH x AS (
  SELECT o.id,
         (SELECT min(e.created_at) FROM order_events e
           WHERE e.order_id = o.id AND e.to_status = 'EXECUTING') AS executed_at
  FROM orders o WHERE o.id = ANY($1::bigint[])),
c AS (
  SELECT x.id,
         (SELECT e.to_status FROM order_events e
           WHERE e.order_id = x.id AND e.created_at = x.executed_at ORDER BY e.seq DESC LIMIT 1)
           IN ('EXECUTING', 'PARTIALLY_FILLED') AS rested,
         (SELECT count(DISTINCT e.created_at) FROM order_events e
           WHERE e.order_id = x.id AND e.created_at > x.executed_at AND e.from_status IS DISTINCT FROM e.to_status) AS wakeups
  FROM x)
SELECT coalesce(rested, false), CASE WHEN rested THEN LEAST(wakeups, $2) ELSE 0 END::int, count(*)::int
FROM c GROUP BY 1, 2 ORDER BY 1, 2`

// ObservedMix reads the shape mix of the given orders' runs.
func ObservedMix(ctx context.Context, pool *pgxpool.Pool, ids []int64) ([]MixClass, error) {
	rows, err := pool.Query(ctx, mixQuery, ids, maxMixWakeups)
	if err != nil {
		return nil, fmt.Errorf("bench: shape mix: %w", err)
	}
	defer rows.Close()
	var out []MixClass
	for rows.Next() {
		var c MixClass
		if err := rows.Scan(&c.Rests, &c.Wakeups, &c.Orders); err != nil {
			return nil, fmt.Errorf("bench: shape mix: %w", err)
		}
		if !c.Rests {
			c.Wakeups = 0
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bench: shape mix: %w", err)
	}
	return out, nil
}

// mixPicker spreads the classes over a sequence of runs in their proportions: run i takes
// the class whose share of the cumulative weight holds frac(i·φ), a low-discrepancy
// sequence, so that every window of the loop has about the mix's proportions and no class
// comes in long streaks.
type mixPicker struct {
	classes []MixClass
	cum     []float64 // cumulative shares, the last 1
}

func newMixPicker(classes []MixClass) (mixPicker, error) {
	total := 0
	for _, c := range classes {
		total += max(c.Orders, 0)
	}
	if total == 0 {
		return mixPicker{}, errors.New("bench: shape mix: no orders to take the mix from")
	}
	p := mixPicker{classes: classes}
	acc := 0
	for _, c := range classes {
		acc += max(c.Orders, 0)
		p.cum = append(p.cum, float64(acc)/float64(total))
	}
	return p, nil
}

func (p mixPicker) pick(i int64) MixClass {
	_, x := math.Modf(float64(i) * math.Phi)
	for j, c := range p.cum {
		if x < c {
			return p.classes[j]
		}
	}
	return p.classes[len(p.classes)-1]
}

// shapeOf is the run shape of an order of class c, as shapes describes them.
func shapeOf(c MixClass) shape {
	if !c.Rests {
		return shapes[1]
	}
	// A run that is never woken still waits, with its recheck timer: it is signalled
	// once the loop is over so that it closes, outside the measured window.
	return shape{LAs: 2, Attrs: true, Wakeups: max(c.Wakeups, 1), Recheck: true}
}

// waitNotices is how a shape's run tells this process, while it runs here, that it waits
// for a signal: its workflow code calls waiting (outside replay, and without a command, so
// the run's history is what it would be without it). A signal sent after that reaches the
// run in a task of its own, as a fill reaches a resting order's run.
type waitNotices struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// expect registers workflow id and returns the channel its waits are told on.
func (n *waitNotices) expect(id string, waits int) <-chan struct{} {
	c := make(chan struct{}, waits)
	n.mu.Lock()
	n.ch[id] = c
	n.mu.Unlock()
	return c
}

func (n *waitNotices) forget(id string) {
	n.mu.Lock()
	delete(n.ch, id)
	n.mu.Unlock()
}

func (n *waitNotices) waiting(ctx workflow.Context) {
	if workflow.IsReplaying(ctx) {
		return
	}
	n.mu.Lock()
	c := n.ch[workflow.GetInfo(ctx).WorkflowExecution.ID]
	n.mu.Unlock()
	if c != nil {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// ShapeMixCeiling measures the Temporal server's rate of order-shaped runs in the mix of
// classes, with no database: concurrency clients, each starting the next run of the mix's
// sequence and waiting until it has settled, as an order settles (ended in its first task,
// or resting and waiting for a signal), back to back for d after a short warm-up. A
// resting run is then woken, beside the loop, as many times as its class was (each
// wake-up once it waits again), which ends it; one never woken is woken after the loop so
// that it closes. It returns after the server has recorded every run closed, so that their work
// does not spill into what is measured next.
func ShapeMixCeiling(ctx context.Context, c client.Client, runID string, mix []MixClass, concurrency int, d time.Duration) (Ceiling, error) {
	picker, err := newMixPicker(mix)
	if err != nil {
		return Ceiling{}, err
	}
	queue := "orderflow-bench-mix-" + runID
	notices := &waitNotices{ch: map[string]chan struct{}{}}
	w := worker.New(c, queue, worker.Options{WorkflowTaskPollerBehavior: workflows.WorkflowTaskPollers()})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, s shape) error { return shapeWorkflow(ctx, s, notices.waiting) },
		workflow.RegisterOptions{Name: shapeWorkflowName})
	w.RegisterActivity(shapeStep)
	if err := w.Start(); err != nil {
		return Ceiling{}, fmt.Errorf("bench: shape mix worker: %w", err)
	}
	defer w.Stop()

	var seq, started atomic.Int64
	var parkedMu sync.Mutex
	parked := map[string]bool{} // runs that may be left waiting: never-woken classes, and runs the loop's end cut short
	park := func(id string, on bool) {
		parkedMu.Lock()
		if on {
			parked[id] = true
		} else {
			delete(parked, id)
		}
		parkedMu.Unlock()
	}
	// Wake-ups come from other orders' fills, after an order has settled on the book, so
	// they are sent beside the loop, as the run waits for each, not by the client that
	// placed it: a client's order is done once it is settled, as in the load.
	var wakers sync.WaitGroup
	wakeCtx, stopWaking := context.WithCancel(ctx)
	defer stopWaking()
	var wakeErr error
	var wakeErrOnce sync.Once
	failWake := func(err error) {
		wakeErrOnce.Do(func() { wakeErr = err })
		stopWaking()
	}
	wake := func(id string, waits <-chan struct{}, n int) {
		defer wakers.Done()
		defer notices.forget(id)
		for range n {
			if err := c.SignalWorkflow(wakeCtx, id, "", shapeSignal, nil); err != nil {
				if wakeCtx.Err() == nil {
					failWake(err)
				}
				return
			}
			// Waits again, or (after the last) ends.
			t := time.NewTimer(wakeTimeout)
			select {
			case <-waits:
				t.Stop()
			case <-t.C:
				failWake(fmt.Errorf("run %s did not take its wake-up within %s", id, wakeTimeout))
				return
			case <-wakeCtx.Done():
				t.Stop()
				return
			}
		}
		park(id, false) // its last wake-up ended it
	}
	op := func(opCtx context.Context) error {
		i := seq.Add(1)
		class := picker.pick(i)
		s := shapeOf(class)
		id := fmt.Sprintf("bench-mix-%s-%d", runID, i)
		if s.Wakeups == 0 {
			run, err := c.ExecuteWorkflow(opCtx, startOptions(id, queue, s, i), shapeWorkflowName, s)
			if err != nil {
				return err
			}
			started.Add(1)
			return run.Get(opCtx, nil)
		}
		waits := notices.expect(id, s.Wakeups+1)
		park(id, true) // woken after the loop unless its wake-ups end it first
		if _, err := c.ExecuteWorkflow(opCtx, startOptions(id, queue, s, i), shapeWorkflowName, s); err != nil {
			notices.forget(id)
			return err
		}
		started.Add(1)
		select {
		case <-waits: // settled: resting on the book
		case <-opCtx.Done():
			notices.forget(id)
			return opCtx.Err()
		}
		if class.Wakeups == 0 {
			notices.forget(id)
			return nil
		}
		wakers.Add(1)
		go wake(id, waits, class.Wakeups)
		return nil
	}
	began := time.Now()
	res, err := closedLoop(ctx, concurrency, d, op)
	if err != nil {
		stopWaking()
	}
	wakers.Wait()
	// The rate is every run started, warm-up included (also those the loop's end cut
	// short, whose work the server has mostly done), over the time until the wake-ups the
	// settled ones were owed had ended them too: a loop that only settled runs faster
	// than the server could wake them would leave that work queued behind it.
	elapsed := time.Since(began)
	if err == nil {
		err = wakeErr
	}
	if err != nil {
		return Ceiling{}, fmt.Errorf("bench: shape mix ceiling: %w", err)
	}
	res.PerSecond = float64(started.Load()) / elapsed.Seconds()
	// Close what still waits; runs that have already ended answer NotFound.
	for id := range parked {
		var nf *serviceerror.NotFound
		if err := c.SignalWorkflow(ctx, id, "", shapeSignal, nil); err != nil && !errors.As(err, &nf) {
			return Ceiling{}, fmt.Errorf("bench: shape mix: wake %s: %w", id, err)
		}
	}
	if err := waitVisible(ctx, c, queue, started.Load()); err != nil {
		return Ceiling{}, fmt.Errorf("bench: shape mix ceiling: %w", err)
	}
	return res, nil
}

// describeMix says what share of the orders each class holds.
func describeMix(mix []MixClass) string {
	total := 0
	for _, c := range mix {
		total += c.Orders
	}
	var parts []string
	for _, c := range mix {
		name := "first task"
		if c.Rests {
			name = fmt.Sprintf("rested, woken %d×", c.Wakeups)
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", name, 100*float64(c.Orders)/float64(max(total, 1))))
	}
	return strings.Join(parts, ", ")
}
