package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/orderflow/orderflow/workflows"
)

// TestRecordedHistoriesStillReplay replays the histories of real runs (recorded by the
// end-to-end tests with -record-histories) against today's OrderWorkflow. A change that
// would make running workflows non-deterministic fails here, before it can reach a
// worker with open runs.
func TestRecordedHistoriesStillReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d recorded histories in testdata, want at least 5", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f)+" replays deterministically", func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(workflows.OrderWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
}
