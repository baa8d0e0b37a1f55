package main

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/workflows"
)

// changedOrderWorkflow is OrderWorkflow as a release that changes it would ship, for the
// rolling-deploy tests: a new command (a timer) gated by workflow.GetVersion, asked where
// the commands differ, so a worker of the older release that is handed a run of the newer
// one fails that workflow task (non-determinism) instead of recording its own commands
// into the run. Workers run it only in a build with -tags rollingdeploy (the chaos
// suite's "next release"); the end-to-end test runs it on a worker of its own.
func changedOrderWorkflow(ctx workflow.Context, in workflows.OrderInput) (workflows.OrderResult, error) {
	if workflow.GetVersion(ctx, rollingChange, workflow.DefaultVersion, 1) >= 1 {
		if err := workflow.Sleep(ctx, time.Millisecond); err != nil {
			return workflows.OrderResult{OrderID: in.OrderID}, err
		}
	}
	return workflows.OrderWorkflow(ctx, in)
}

// rollingChange is changedOrderWorkflow's change id.
const rollingChange = "rolling-deploy-test"
