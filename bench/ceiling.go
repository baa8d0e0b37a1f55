package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/workflows"
)

// Ceiling is the rate of the simplest operation a part of the system can do, measured on
// the same machine in the same run: what the system's own figures are compared against.
type Ceiling struct {
	PerSecond   float64
	Count       int64 // operations completed in the measured window
	Total       int64 // operations completed, warm-up included
	Concurrency int
	Duration    time.Duration
	Latency     Summary // of one operation, in the measured window
}

// ceilingWarmup runs before a ceiling's measured window and is not counted.
const ceilingWarmup = time.Second

// ceilingTable is the scratch table of the database ceiling, dropped afterwards.
const ceilingTable = "bench_ceiling"

// DBCeiling measures PostgreSQL's rate of single-row INSERT transactions through a pool
// of the application's size (DB_MAX_CONNS): as many workers as connections, each
// inserting one row per transaction (one statement, committed on its own) into a
// scratch table, for d after a short warm-up. The row is about the size of an order's.
func DBCeiling(ctx context.Context, databaseURL string, conns int32, d time.Duration) (Ceiling, error) {
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return Ceiling{}, fmt.Errorf("bench: database URL: %w", err)
	}
	pcfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return Ceiling{}, fmt.Errorf("bench: database: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ceilingTable+` (
		id bigserial PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return Ceiling{}, fmt.Errorf("bench: create %s: %w", ceilingTable, err)
	}
	defer func() {
		// The scratch table goes even when the run is interrupted.
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = pool.Exec(dropCtx, `DROP TABLE IF EXISTS `+ceilingTable)
	}()
	payload := strings.Repeat("x", 200)
	insert := func(ctx context.Context) error {
		_, err := pool.Exec(ctx, `INSERT INTO `+ceilingTable+` (payload) VALUES ($1)`, payload)
		return err
	}
	c, err := closedLoop(ctx, int(conns), d, insert)
	if err != nil {
		return c, fmt.Errorf("bench: database ceiling: %w", err)
	}
	return c, nil
}

// emptyWorkflowName is the registered name of EmptyWorkflow.
const emptyWorkflowName = "OrderflowBenchEmptyWorkflow"

// EmptyWorkflow does nothing: its executions per second are the most the Temporal server
// can complete, with no activity, timer or signal, which is what OrderWorkflow is
// compared against.
func EmptyWorkflow(workflow.Context) error { return nil }

// EngineCeiling measures the Temporal server's rate of empty workflow executions: a
// worker in this process on a task queue of its own, and concurrency clients each
// starting an EmptyWorkflow and waiting for its result, then the next, for d after a
// short warm-up, and until the server has recorded every one of them closed. measured,
// if not nil, is called then, before the worker stops.
func EngineCeiling(ctx context.Context, c client.Client, runID string, concurrency int, d time.Duration, measured func()) (Ceiling, error) {
	queue := "orderflow-bench-" + runID
	w := worker.New(c, queue, worker.Options{WorkflowTaskPollerBehavior: workflows.WorkflowTaskPollers()})
	w.RegisterWorkflowWithOptions(EmptyWorkflow, workflow.RegisterOptions{Name: emptyWorkflowName})
	if err := w.Start(); err != nil {
		return Ceiling{}, fmt.Errorf("bench: engine ceiling worker: %w", err)
	}
	defer w.Stop()
	var seq atomic.Int64
	execute := func(ctx context.Context) error {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:        fmt.Sprintf("bench-empty-%s-%d", runID, seq.Add(1)),
			TaskQueue: queue,
			// As the application's consumer starts order runs: the first workflow task comes
			// back in the start response when this process runs the queue's worker.
			EnableEagerStart: true,
			// Runs left behind by an interrupted bench end on their own.
			WorkflowRunTimeout: time.Minute,
		}, emptyWorkflowName)
		if err != nil {
			return err
		}
		return run.Get(ctx, nil)
	}
	res, err := closedLoop(ctx, concurrency, d, execute)
	if err == nil {
		// A workflow's result comes before the server has finished with it (its
		// visibility record is written afterwards, from a queue). Wait for that work too,
		// so that it is counted in the ceiling's cost and does not spill into the load
		// measured next.
		err = waitVisible(ctx, c, queue, res.Total)
	}
	if measured != nil {
		measured()
	}
	if err != nil {
		return res, fmt.Errorf("bench: engine ceiling: %w", err)
	}
	return res, nil
}

// settleTimeout bounds the wait for the server to record the ceiling's workflows.
const settleTimeout = time.Minute

// waitVisible waits until the visibility store shows no run of queue open and at least
// closed of them closed.
func waitVisible(ctx context.Context, c client.Client, queue string, closed int64) error {
	return untilVisible(ctx, c, fmt.Sprintf("the server had not recorded the ceiling's %d workflows as closed", closed),
		func(count func(query string) (int64, error)) (bool, error) {
			running, err := count(fmt.Sprintf("TaskQueue = %q AND ExecutionStatus = \"Running\"", queue))
			if err != nil || running > 0 {
				return false, err
			}
			done, err := count(fmt.Sprintf("TaskQueue = %q AND ExecutionStatus != \"Running\"", queue))
			return done >= closed, err
		})
}

// untilVisible asks the visibility store, every 200 ms for up to settleTimeout, whether
// done, which counts with count the runs a visibility query matches. what says, for the
// error, what was still not so when the time ran out.
func untilVisible(ctx context.Context, c client.Client, what string, done func(count func(query string) (int64, error)) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	count := func(query string) (int64, error) {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		return resp.GetCount(), err
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := done(count)
		if ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s after %s (last error: %v)", what, settleTimeout, err)
		case <-tick.C:
		}
	}
}

// closedLoop runs op from concurrency goroutines back to back for ceilingWarmup plus d,
// and returns the rate of the operations that completed in the last d. The first error
// other than the end of the run stops it.
func closedLoop(parent context.Context, concurrency int, d time.Duration, op func(context.Context) error) (Ceiling, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	start := time.Now().Add(ceilingWarmup)
	end := start.Add(d)
	var count, total atomic.Int64
	var lat Latencies
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				began := time.Now()
				if err := op(ctx); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				total.Add(1)
				now := time.Now()
				if now.After(end) {
					cancel()
					return
				}
				if !now.Before(start) {
					count.Add(1)
					lat.Add(now.Sub(began))
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Ceiling{}, firstErr
	}
	if err := parent.Err(); err != nil {
		return Ceiling{}, err
	}
	n := count.Load()
	return Ceiling{PerSecond: float64(n) / d.Seconds(), Count: n, Total: total.Load(), Concurrency: concurrency, Duration: d, Latency: Summarize(lat.Take())}, nil
}
