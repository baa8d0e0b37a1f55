package workflows_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/orderflow/orderflow/workflows"
)

// TestRecordedHistoriesStillReplay replays the histories of real runs (recorded by the
// end-to-end tests with -record-histories) against today's OrderWorkflow. A change that
// would make running workflows non-deterministic fails here, before it can reach a
// worker with open runs. Every set of recorded histories stays (name.revN[.SET].json,
// one set per release that changed the workflow): a worker must replay the runs of
// every release still open, closed or not.
func TestRecordedHistoriesStillReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for rev := workflows.RevisionPerChange; rev <= workflows.CurrentRevision; rev++ {
		n := 0
		for _, f := range files {
			if strings.Contains(filepath.Base(f), fmt.Sprintf(".rev%d.", rev)) {
				n++
			}
		}
		if n < 5 {
			t.Errorf("found %d recorded histories of revision %d in testdata, want at least 5", n, rev)
		}
	}
	// Runs a new worker picks up are open as often as closed: waiting on the book,
	// parked, and links of a continue-as-new chain.
	for _, kind := range []string{"limit_resting_open.", "parked_open.", "continued_first.", "continued_open."} {
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasPrefix(filepath.Base(f), kind) }) {
			t.Errorf("no recorded history %s*.json in testdata", kind)
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
