package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// orderWorkflowType is the type name OrderWorkflow is registered under (its function
// name), as visibility queries filter on it.
const orderWorkflowType = "OrderWorkflow"

// listPageSize is how many runs one visibility request returns.
const listPageSize = 1000

// TemporalRuns lists order runs through a Temporal client's visibility API.
type TemporalRuns struct {
	client    client.Client
	namespace string
}

// NewTemporalRuns returns a RunLister over c, whose namespace is namespace (the client
// does not say; Retention needs it).
func NewTemporalRuns(c client.Client, namespace string) *TemporalRuns {
	return &TemporalRuns{client: c, namespace: namespace}
}

// OrderRuns lists every OrderWorkflow run in the namespace, page by page, and groups
// them by workflow id. Runs that continued as new are links of one chain, not runs of
// their own. Visibility is eventually consistent, so a workflow id whose only listed
// runs continued as new (the new run not yet indexed) is described directly, which reads
// the current run's state rather than the index.
func (r *TemporalRuns) OrderRuns(ctx context.Context) (map[string]Runs, error) {
	runs := map[string]Runs{}
	chained := map[string]bool{}
	var token []byte
	for {
		resp, err := r.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("WorkflowType = '%s'", orderWorkflowType),
			PageSize:      listPageSize,
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list workflows: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
				chained[id] = true
				if _, ok := runs[id]; !ok {
					runs[id] = Runs{}
				}
				continue
			}
			runs[id] = add(runs[id], e.GetStatus())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	for id := range chained {
		if runs[id].Count > 0 {
			continue
		}
		d, err := r.client.DescribeWorkflowExecution(ctx, id, "")
		var gone *serviceerror.NotFound
		if errors.As(err, &gone) {
			continue // no current run: the audit reports the order as having none
		}
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", id, err)
		}
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			runs[id] = add(runs[id], st)
		}
	}
	return runs, nil
}

// add counts one run that did not continue as new. Visibility lists open runs first,
// then closed ones from the most recent, so the first status seen is taken as the latest.
func add(r Runs, st enumspb.WorkflowExecutionStatus) Runs {
	r.Count++
	if st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || st == enumspb.WORKFLOW_EXECUTION_STATUS_PAUSED {
		r.Live = true
	}
	if r.Last == "" {
		r.Last = statusName(st)
	}
	return r
}

// statusName turns WORKFLOW_EXECUTION_STATUS_TIMED_OUT into TimedOut, as the Temporal UI
// and CLI show it.
func statusName(st enumspb.WorkflowExecutionStatus) string {
	var b strings.Builder
	for _, w := range strings.Split(strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_"), "_") {
		if w != "" {
			b.WriteString(w[:1] + strings.ToLower(w[1:]))
		}
	}
	return b.String()
}

// Retention returns how long the namespace keeps closed runs, for Options.Retention.
func (r *TemporalRuns) Retention(ctx context.Context) (time.Duration, error) {
	resp, err := r.client.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: r.namespace})
	if err != nil {
		return 0, fmt.Errorf("describe namespace %s: %w", r.namespace, err)
	}
	return resp.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(), nil
}
