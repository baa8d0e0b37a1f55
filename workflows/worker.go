package workflows

import "go.temporal.io/sdk/worker"

// WorkflowTaskPollers is how a worker of order runs polls for workflow tasks: as many
// polls as the server's backlog hints call for (the SDK's autoscaling), not the SDK's
// default of two. A run's first task comes back with its eager start and needs no poll;
// every later one (a fill or a cancel waking a resting run, a timer) does. With two
// polls, under load those tasks waited 2.5–5 s to start while new runs went on at
// once, so most cancels outlasted CANCEL_WAIT (202) and resting runs lagged their
// orders by seconds. The bench's engine ceilings poll the same way, to stay comparable.
func WorkflowTaskPollers() worker.PollerBehavior {
	return worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{})
}
