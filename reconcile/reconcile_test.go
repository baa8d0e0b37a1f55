package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/queries"
	"github.com/orderflow/orderflow/reconcile"
	"github.com/orderflow/orderflow/workflows"
)

// closedRuns is a Temporal client whose visibility lists the given runs (in one page);
// nothing else of client.Client is used.
type closedRuns struct {
	client.Client
	runs  []*workflowpb.WorkflowExecutionInfo
	query string
}

func (c *closedRuns) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	c.query = req.GetQuery()
	return &workflowservice.ListWorkflowExecutionsResponse{Executions: c.runs}, nil
}

func run(wid string, st enumspb.WorkflowExecutionStatus) *workflowpb.WorkflowExecutionInfo {
	return &workflowpb.WorkflowExecutionInfo{Execution: &commonpb.WorkflowExecution{WorkflowId: wid}, Status: st}
}

// openOrders is the database's open orders.
type openOrders map[int64]queries.Order

func (o openOrders) OpenOrders(_ context.Context, ids []int64) ([]queries.Order, error) {
	var out []queries.Order
	for _, id := range ids {
		if x, ok := o[id]; ok {
			out = append(out, x)
		}
	}
	return out, nil
}

// OpenOrdersAfter returns the orders after afterID, by id.
func (o openOrders) OpenOrdersAfter(_ context.Context, afterID int64, _ int32) ([]queries.Order, error) {
	var out []queries.Order
	for _, x := range o {
		if x.ID > afterID {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b queries.Order) int { return int(a.ID - b.ID) })
	return out, nil
}

func (o openOrders) RunKeys(_ context.Context, ids []int64) (map[int64]string, error) {
	keys := map[int64]string{}
	for _, id := range ids {
		if x, ok := o[id]; ok {
			keys[id] = x.RunKey
		}
	}
	return keys, nil
}

// starts records the starts, failing those of the orders in fail.
type starts struct {
	mu        sync.Mutex
	restarted []int64
	cancelled []int64
	ended     []string
	fail      map[int64]bool
}

func (s *starts) EndStray(_ context.Context, wid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = append(s.ended, wid)
	return nil
}

func (s *starts) Restart(_ context.Context, r workflows.StartRequest) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail[r.OrderID] {
		return false, errors.New("unavailable")
	}
	s.restarted = append(s.restarted, r.OrderID)
	return true, nil
}

func (s *starts) RestartCancelled(_ context.Context, r workflows.StartRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancelled = append(s.cancelled, r.OrderID)
	return nil
}

func TestAPassRepairsEachOpenOrderOfItsOwnClosedRuns(t *testing.T) {
	c := &closedRuns{runs: []*workflowpb.WorkflowExecutionInfo{
		// Order 5's id was used before a restore: that run, listed first, is not its.
		run("order-5-0ld0ld0ld0ld", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED),
		run("order-5-aaaaaaaaaaaa", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED),
		run("order-6-bbbbbbbbbbbb", enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED),
		run("order-7-cccccccccccc", enumspb.WORKFLOW_EXECUTION_STATUS_FAILED),
		run("order-8-dddddddddddd", enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT),
		run("order-9-eeeeeeeeeeee", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED),  // its order has ended
		run("order-10-ffffffffffff", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED), // another key than its order's
		run("not-an-order", enumspb.WORKFLOW_EXECUTION_STATUS_FAILED),
	}}
	orders := openOrders{
		5: {ID: 5, RunKey: "aaaaaaaaaaaa", Status: "EXECUTING"}, 6: {ID: 6, RunKey: "bbbbbbbbbbbb", Status: "EXECUTING"},
		7: {ID: 7, RunKey: "cccccccccccc", Status: "VALIDATED"}, 8: {ID: 8, RunKey: "dddddddddddd", Status: "CREATED"},
		10: {ID: 10, RunKey: "111111111111", Status: "EXECUTING"},
	}
	st := &starts{fail: map[int64]bool{8: true}}
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rep, err := reconcile.New(c, st, orders, nil).Closed(context.Background(), since)
	if err != nil {
		t.Fatalf("a pass with one failed start: %v, want it to carry on and report it", err)
	}
	slices.Sort(st.restarted)
	if !slices.Equal(st.restarted, []int64{5, 7}) || !slices.Equal(st.cancelled, []int64{6}) || !slices.Equal(rep.Failed, []int64{8}) {
		t.Errorf("restarted %v, restarted cancelling %v, failed %v; want 5 and 7, 6, and 8", st.restarted, st.cancelled, rep.Failed)
	}
	if len(rep.Restarted) != 3 || rep.Checked != 4 {
		t.Errorf("report %+v, want 3 repairs of 4 orders checked", rep)
	}
	want := "WorkflowType = 'OrderWorkflow' AND ExecutionStatus IN ('Terminated', 'Failed', 'TimedOut', 'Canceled') AND CloseTime >= '2026-12-01T10:00:00Z'"
	if c.query != want {
		t.Errorf("query %q, want %q", c.query, want)
	}
}

// A pass whose starts partly failed looks again from the same point; otherwise the next
// one starts from where it began looking, less the overlap for visibility's lag.
func TestTheNextPassStartsWhereTheLastCompleteOneBegan(t *testing.T) {
	until := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		incomplete bool
		want       time.Time
	}{{false, until.Add(-5 * time.Minute)}, {true, until}} {
		var got time.Time
		env := newWorkflowEnv(t)
		env.RegisterActivityWithOptions(func(_ context.Context, since time.Time) (workflows.ReconcileResult, error) {
			got = since
			return workflows.ReconcileResult{Until: since}, nil
		}, activityName())
		env.SetLastCompletionResult(workflows.ReconcileResult{Until: until, Incomplete: tc.incomplete})
		env.ExecuteWorkflow(workflows.ReconcileWorkflow)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if !got.Equal(tc.want) {
			t.Errorf("incomplete %v: the pass looked from %v, want %v", tc.incomplete, got, tc.want)
		}
	}
}

// After a restore, --all gives every open order without a running run a new one, and
// tells the running runs that are no order's (another key, or no order with their id)
// to end.
func TestReconcilingAllAlsoEndsTheRunsOfNoOrder(t *testing.T) {
	c := &closedRuns{runs: []*workflowpb.WorkflowExecutionInfo{
		run("order-5-aaaaaaaaaaaa", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING),  // its order's own
		run("order-5-0ld0ld0ld0ld", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING),  // the id's, before the restore
		run("order-77-bbbbbbbbbbbb", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING), // an order the restore took back
		run("order-6", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING),               // a legacy order's own
	}}
	orders := openOrders{
		5: {ID: 5, RunKey: "aaaaaaaaaaaa", Status: "EXECUTING"},
		6: {ID: 6, RunKey: "", Status: "EXECUTING"},
	}
	st := &starts{}
	rep, err := reconcile.New(c, st, orders, nil).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(st.ended)
	if want := []string{"order-5-0ld0ld0ld0ld", "order-77-bbbbbbbbbbbb"}; !slices.Equal(st.ended, want) || !slices.Equal(rep.Strays, want) {
		t.Errorf("told to end %v (report %v), want %v", st.ended, rep.Strays, want)
	}
	slices.Sort(st.restarted)
	if !slices.Equal(st.restarted, []int64{5, 6}) || rep.Checked != 2 {
		t.Errorf("restarted %v of %d checked, want 5 and 6 (whose runs are running: no new run for them in production)", st.restarted, rep.Checked)
	}
}
