// Package reconcile gives a new run to every order that is open although its run has
// closed: a run terminated from the Temporal UI or CLI, one that failed or timed out, a
// cancelled run that could not cancel its order, and, after a restore of the database,
// orders whose runs completed in the history the restore took back. A new run reads
// where PostgreSQL says the order stands and carries on from there.
//
// The worker runs it on a Temporal schedule (workflows.ReconcileWorkflow, over the runs
// closed since the last pass), and `orderflow orders reconcile` runs it by hand, with
// --all for every open order.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
	"github.com/orderflow/orderflow/workflows"
)

// Starter starts a run for an open order even if the order had runs before; with
// RestartCancelled, the run cancels the order. EndStray tells a running run that is no
// order's to find out (it is sent a cancel, which its next step refuses as not its own,
// and it ends). (workflows.Starter is one.)
type Starter interface {
	Restart(ctx context.Context, r workflows.StartRequest) (started bool, err error)
	RestartCancelled(ctx context.Context, r workflows.StartRequest) error
	EndStray(ctx context.Context, workflowID string) error
}

// Orders reads open orders and run keys. (orderbook.Service is one.)
type Orders interface {
	OpenOrders(ctx context.Context, ids []int64) ([]queries.Order, error)
	OpenOrdersAfter(ctx context.Context, afterID int64, max int32) ([]queries.Order, error)
	RunKeys(ctx context.Context, ids []int64) (map[int64]string, error)
}

// Reconciler finds open orders without a live run and starts one.
type Reconciler struct {
	runs    client.Client
	starter Starter
	orders  Orders
	log     *slog.Logger
}

// New returns a Reconciler that lists runs through c.
func New(c client.Client, starter Starter, orders Orders, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{runs: c, starter: starter, orders: orders, log: logger}
}

// Repair is an order the reconciler gave a new run.
type Repair struct {
	OrderID    int64
	Status     order.Status
	WorkflowID string
	// Cancelled: its last run was cancelled (from the Temporal UI or CLI) and could not
	// cancel it, so the new run cancels it.
	Cancelled bool
}

// Report is what one pass did: it checked Checked open orders and gave each of
// Restarted a new run. Failed are the orders whose start failed (the server
// unavailable, say); the next pass tries them again.
type Report struct {
	Checked   int
	Restarted []Repair
	Failed    []int64
	// Strays are the running runs All found to be no order's (left from another history
	// of the database) and told to end.
	Strays []string
}

// Concurrency and page sizes: the starts of one pass run a few at a time, so that a pass
// over many orders does not crowd out the orders' own runs.
const (
	startWorkers = 8
	pageSize     = 500
)

// closedUnfinished are the ways a run can close without having ended its order.
const closedUnfinished = `ExecutionStatus IN ('Terminated', 'Failed', 'TimedOut', 'Canceled')`

// candidate is an order id's closed runs in one page: by run key, whether one of them
// was cancelled.
type candidate map[string]bool

// Closed reconciles the orders whose runs closed without finishing since since. An order
// whose run was cancelled is given a run that cancels it (the operator's intent); any
// other, a run that carries on where the order stands.
func (r *Reconciler) Closed(ctx context.Context, since time.Time) (Report, error) {
	query := fmt.Sprintf("WorkflowType = 'OrderWorkflow' AND %s AND CloseTime >= '%s'",
		closedUnfinished, since.UTC().Format(time.RFC3339Nano))
	var rep Report
	var token []byte
	for {
		resp, err := r.runs.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: query, PageSize: pageSize, NextPageToken: token,
		})
		if err != nil {
			return rep, fmt.Errorf("reconcile: list closed runs: %w", err)
		}
		closed := map[int64]candidate{}
		var ids []int64
		for _, e := range resp.GetExecutions() {
			id, key, ok := order.ParseWorkflowID(e.GetExecution().GetWorkflowId())
			if !ok || e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				continue
			}
			if closed[id] == nil {
				closed[id] = candidate{}
				ids = append(ids, id)
			}
			closed[id][key] = closed[id][key] || e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED
		}
		open, err := r.orders.OpenOrders(ctx, ids)
		if err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		// A closed run is the order's only if it has the order's key: one left from
		// another history of the database says nothing about the order now with its id.
		var mine []queries.Order
		cancelled := map[int64]bool{}
		for _, o := range open {
			if c, ok := closed[o.ID][o.RunKey]; ok {
				mine = append(mine, o)
				cancelled[o.ID] = c
			}
		}
		r.restart(ctx, mine, cancelled, &rep)
		heartbeat(ctx, rep)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return rep, nil
		}
	}
}

// All reconciles every open order: each is given a new run unless one is running. It is
// the step to take after restoring the database (RUNBOOK.md), when orders the restore
// brought back open may have runs that completed in the history it took back. Then it
// tells the running runs left from that history (no order has their id and key) to end,
// which they would otherwise do only at their next recheck.
func (r *Reconciler) All(ctx context.Context) (Report, error) {
	var rep Report
	var after int64
	for {
		page, err := r.orders.OpenOrdersAfter(ctx, after, pageSize)
		if err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		if len(page) == 0 {
			break
		}
		r.restart(ctx, page, nil, &rep)
		heartbeat(ctx, rep)
		after = page[len(page)-1].ID
	}
	return rep, r.endStrays(ctx, &rep)
}

// endStrays tells every running OrderWorkflow run whose id and key name no order to end.
func (r *Reconciler) endStrays(ctx context.Context, rep *Report) error {
	var token []byte
	for {
		resp, err := r.runs.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running'", PageSize: pageSize, NextPageToken: token,
		})
		if err != nil {
			return fmt.Errorf("reconcile: list running runs: %w", err)
		}
		keys := map[string]int64{}
		var ids []int64
		for _, e := range resp.GetExecutions() {
			wid := e.GetExecution().GetWorkflowId()
			if id, _, ok := order.ParseWorkflowID(wid); ok {
				keys[wid] = id
				ids = append(ids, id)
			}
		}
		have, err := r.orders.RunKeys(ctx, ids)
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		for wid, id := range keys {
			if key, ok := have[id]; ok && workflows.OrderWorkflowID(id, key) == wid {
				continue // its order's own run
			}
			if err := r.starter.EndStray(ctx, wid); err != nil {
				r.log.Warn("could not tell a stray run to end; it ends at its next recheck", "workflow_id", wid, "error", err)
				continue
			}
			rep.Strays = append(rep.Strays, wid)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			slices.Sort(rep.Strays)
			return nil
		}
	}
}

// heartbeat tells Temporal the pass is alive, when it runs as an activity.
func heartbeat(ctx context.Context, rep Report) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, rep.Checked)
	}
}

// restart starts a run for each order that has none running, startWorkers at a time;
// one whose run was cancelled gets a run that cancels it. An order whose start fails is
// logged and reported, and does not hold up the others.
func (r *Reconciler) restart(ctx context.Context, orders []queries.Order, cancelled map[int64]bool, rep *Report) {
	started := make([]bool, len(orders))
	failed := make([]error, len(orders))
	var g errgroup.Group
	g.SetLimit(startWorkers)
	for i, o := range orders {
		g.Go(func() error {
			req := workflows.StartRequest{
				OrderID: o.ID, RunKey: o.RunKey, UserID: o.UserID, InstrumentID: o.InstrumentID, Side: o.Side, Kind: o.Kind,
			}
			if cancelled[o.ID] {
				failed[i] = r.starter.RestartCancelled(ctx, req)
				started[i] = failed[i] == nil
			} else {
				started[i], failed[i] = r.starter.Restart(ctx, req)
			}
			return nil
		})
	}
	_ = g.Wait() // each start's error is in failed
	rep.Checked += len(orders)
	for i, o := range orders {
		wid := workflows.OrderWorkflowID(o.ID, o.RunKey)
		switch {
		case failed[i] != nil:
			r.log.Error("could not start a run for an open order without one; the next pass tries again",
				"order_id", o.ID, "workflow_id", wid, "error", failed[i])
			rep.Failed = append(rep.Failed, o.ID)
		case started[i]:
			r.log.Warn("open order had no live run; started a new one", "order_id", o.ID, "status", o.Status,
				"workflow_id", wid, "cancels", cancelled[o.ID])
			rep.Restarted = append(rep.Restarted, Repair{OrderID: o.ID, Status: order.Status(o.Status), WorkflowID: wid, Cancelled: cancelled[o.ID]})
		}
	}
}

// Activities are the reconciler's Temporal activities, for the schedule's workflow.
type Activities struct {
	r *Reconciler
}

// NewActivities returns the activities over r.
func NewActivities(r *Reconciler) *Activities { return &Activities{r: r} }

// ReconcileClosedRuns is workflows.ActivityReconcileClosedRuns: one pass over the runs
// closed since since.
// A pass in which some start failed ends Incomplete, with Until its own since, so the
// next pass looks at the same runs again (those it started find their runs running).
func (a *Activities) ReconcileClosedRuns(ctx context.Context, since time.Time) (workflows.ReconcileResult, error) {
	res := workflows.ReconcileResult{Until: time.Now()}
	rep, err := a.r.Closed(ctx, since)
	res.Checked = rep.Checked
	for _, x := range rep.Restarted {
		res.Restarted = append(res.Restarted, x.OrderID)
	}
	if len(rep.Failed) > 0 {
		res.Until, res.Incomplete = since, true
	}
	if err != nil {
		activity.GetLogger(ctx).Warn("reconcile pass failed", "error", err)
		return res, err
	}
	return res, nil
}

// EnsureSchedule creates the reconciler's schedule, every interval, or updates its
// interval if it exists (every worker calls it at start; they agree).
func EnsureSchedule(ctx context.Context, c client.Client, interval time.Duration) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: interval}}}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   workflows.ReconcileScheduleID,
		Spec: spec,
		Action: &client.ScheduleWorkflowAction{
			ID: workflows.ReconcileWorkflowID, Workflow: workflows.ReconcileWorkflow, TaskQueue: workflows.TaskQueue,
			StaticSummary: "gives a new run to open orders whose run closed without ending them",
		},
		// A pass still running when the next is due makes the next unnecessary.
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Note:    "created by orderflow worker (RECONCILE_INTERVAL)",
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create schedule %s: %w", workflows.ReconcileScheduleID, err)
	}
	err = c.ScheduleClient().GetHandle(ctx, workflows.ReconcileScheduleID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update schedule %s: %w", workflows.ReconcileScheduleID, err)
	}
	return nil
}
