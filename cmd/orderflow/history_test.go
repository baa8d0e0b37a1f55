package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orderflow/orderflow/workflows"
)

// -record-histories rewrites the workflow histories that workflows' replay test checks
// every change against. Run it after a deliberate, versioned change to OrderWorkflow:
//
//	go test ./cmd/orderflow -run . -record-histories
var recordHistories = flag.Bool("record-histories", false, "write the order runs' histories to workflows/testdata")

// recordedSet names the histories this release's code records: name.revN.SET.json. A
// release that changes OrderWorkflow records a new set and keeps every older one, since
// the runs those releases left open must still replay (the files without a set are the
// first releases'; the 2026-11 set was recorded with the release before run keys, on the
// paths this one changed: a stale fail signal, an unknown order, a parked run cancelled;
// the 2026-12 set, with three lifecycle steps, before Validate handed orders to matching
// in its own write, which the 2026-12b set records).
const recordedSet = "2026-12b"

// recordHistory saves the history of the order's run, once it has closed, when
// -record-histories is given.
func (s *stack) recordHistory(t *testing.T, orderID int64, name string) {
	t.Helper()
	if !*recordHistories {
		return
	}
	ctx := context.Background()
	id := s.get(t, orderID).WorkflowID
	if err := s.temporal.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		t.Fatalf("wait for %s to close: %v", id, err)
	}
	s.saveHistory(t, id, "", name)
}

// recordOpenHistory saves the history of a run that is still open (waiting on the book,
// parked), as a worker that picks it up after a deploy replays it.
func (s *stack) recordOpenHistory(t *testing.T, wid, runID, name string) {
	t.Helper()
	if !*recordHistories {
		return
	}
	// The history is taken once the run waits: no workflow task pending or running.
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := s.temporal.DescribeWorkflowExecution(context.Background(), wid, runID)
		if err != nil {
			t.Fatal(err)
		}
		if d.GetPendingWorkflowTask() == nil && len(d.GetPendingActivities()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not settle to record its open history", wid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.saveHistory(t, wid, runID, name)
}

func (s *stack) saveHistory(t *testing.T, wid, runID, name string) {
	t.Helper()
	var h historypb.History
	it := s.temporal.GetWorkflowHistory(context.Background(), wid, runID, false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("%s.rev%d.%s.json", name, workflows.CurrentRevision, recordedSet)
	if err := os.WriteFile(filepath.Join("..", "..", "workflows", "testdata", file), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
