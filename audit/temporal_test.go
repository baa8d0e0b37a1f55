package audit_test

import (
	"context"
	"reflect"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/audit"
)

// visibility stands in for a Temporal client: it answers ListWorkflow from pages of
// (workflow id, status) and DescribeWorkflowExecution from the current runs. Any other
// method panics on the nil embedded client, which would show the adapter needs more.
type visibility struct {
	client.Client
	pages   [][]run
	current map[string]enumspb.WorkflowExecutionStatus
	queries []string
}

type run struct {
	id     string
	status enumspb.WorkflowExecutionStatus
}

func (v *visibility) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	v.queries = append(v.queries, req.GetQuery())
	page := 0
	if len(req.GetNextPageToken()) > 0 {
		page = int(req.GetNextPageToken()[0])
	}
	resp := &workflowservice.ListWorkflowExecutionsResponse{}
	for _, r := range v.pages[page] {
		resp.Executions = append(resp.Executions, &workflowpb.WorkflowExecutionInfo{
			Execution: &commonpb.WorkflowExecution{WorkflowId: r.id}, Status: r.status,
		})
	}
	if page+1 < len(v.pages) {
		resp.NextPageToken = []byte{byte(page + 1)}
	}
	return resp, nil
}

func (v *visibility) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	st, ok := v.current[id]
	if !ok {
		return nil, serviceerror.NewNotFound("no such workflow")
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: st},
	}, nil
}

func TestTemporalRunsCountsAChainOfContinuedRunsAsOneRun(t *testing.T) {
	t.Parallel()
	const (
		running = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
		done    = enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
		chained = enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
		killed  = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
		timeout = enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT
	)
	v := &visibility{
		pages: [][]run{
			{{"order-1", done}, {"order-2", running}, {"order-2", chained}, {"order-3", killed}},
			{{"order-2", chained}, {"order-4", chained}, {"order-5", done}, {"order-5", timeout}, {"order-6", chained}},
		},
		// order-4's new run is not indexed yet: describing it finds it running. order-6's
		// chain is gone altogether.
		current: map[string]enumspb.WorkflowExecutionStatus{"order-4": running},
	}
	got, err := audit.NewTemporalRuns(v, "default").OrderRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]audit.Runs{
		"order-1": {Count: 1, Last: "Completed"},
		"order-2": {Count: 1, Live: true, Last: "Running"},
		"order-3": {Count: 1, Last: "Terminated"},
		"order-4": {Count: 1, Live: true, Last: "Running"},
		"order-5": {Count: 2, Last: "Completed"},
		"order-6": {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("runs = %+v, want %+v", got, want)
	}
	if len(v.queries) != 2 || v.queries[0] != "WorkflowType = 'OrderWorkflow'" {
		t.Errorf("visibility queries = %q, want two pages of WorkflowType = 'OrderWorkflow'", v.queries)
	}
}
