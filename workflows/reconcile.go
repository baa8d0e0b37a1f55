package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The reconciler: a Temporal schedule starts ReconcileWorkflow every interval, on the
// orders' task queue; its one activity (package reconcile) gives a new run to every open
// order whose run closed without ending it (terminated, failed, timed out, or cancelled
// and unable to cancel its order).
const (
	// ReconcileScheduleID is the schedule's id, as the Temporal UI and CLI show it.
	ReconcileScheduleID = "orderflow-reconcile"
	// ReconcileWorkflowID is the id of the runs the schedule starts (the server appends
	// the scheduled time).
	ReconcileWorkflowID = "orderflow-reconcile"
	// ActivityReconcileClosedRuns is the name of the reconciler's activity, registered
	// by package reconcile (which this package cannot import).
	ActivityReconcileClosedRuns = "ReconcileClosedRuns"
)

// Reconcile windows. A pass looks at the runs closed since the one before it began, less
// reconcileOverlap, because visibility records of closing runs become visible some time
// after the close (seconds on SQL visibility, more on Elasticsearch under load); the
// first pass ever looks reconcileFirstLookback back.
const (
	reconcileOverlap       = 5 * time.Minute
	reconcileFirstLookback = 24 * time.Hour
)

// ReconcileResult is one pass's report. Until is when the pass began to look, so the
// next pass starts from there (it reads it as the schedule's last completion result);
// Incomplete says some order's start failed and could succeed later, so the next pass
// looks again from the same point (Until is then the pass's own start of the window).
type ReconcileResult struct {
	Until      time.Time
	Incomplete bool
	Checked    int
	Restarted  []int64
}

// ReconcileWorkflow is one pass of the reconciler over the runs closed since the last
// pass that completed.
func ReconcileWorkflow(ctx workflow.Context) (ReconcileResult, error) {
	since := workflow.Now(ctx).Add(-reconcileFirstLookback)
	var last ReconcileResult
	if workflow.HasLastCompletionResult(ctx) && workflow.GetLastCompletionResult(ctx, &last) == nil && !last.Until.IsZero() {
		since = last.Until
		if !last.Incomplete {
			since = since.Add(-reconcileOverlap)
		}
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    time.Minute, // the pass heartbeats after each page
		// A failed pass is the next scheduled pass's to do again, from the same point.
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var res ReconcileResult
	err := workflow.ExecuteActivity(ctx, ActivityReconcileClosedRuns, since).Get(ctx, &res)
	return res, err
}
