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

func (o openOrders) OpenOrdersAfter(context.Context, int64, int32) ([]queries.Order, error) {
	return nil, errors.New("not used")
}

// starts records the starts, failing those of the orders in fail.
type starts struct {
	mu        sync.Mutex
	restarted []int64
	cancelled []int64
	fail      map[int64]bool
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
