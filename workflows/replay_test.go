package workflows_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/orderflow/orderflow/workflows"
)

// TestRecordedHistoriesStillReplay replays the histories of real runs (recorded by the
// end-to-end tests with -record-histories) against today's OrderWorkflow. A change that
// would make running workflows non-deterministic fails here, before it can reach a
// worker with open runs. Each revision of OrderWorkflow keeps its histories (name.revN.json):
// a worker must replay the runs of every revision still open.
func TestRecordedHistoriesStillReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for rev := workflows.RevisionPerChange; rev <= workflows.CurrentRevision; rev++ {
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f, fmt.Sprintf(".rev%d.json", rev)) {
				n++
			}
		}
		if n < 5 {
			t.Errorf("found %d recorded histories of revision %d in testdata, want at least 5", n, rev)
		}
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
