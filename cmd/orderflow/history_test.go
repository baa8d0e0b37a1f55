package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orderflow/orderflow/workflows"
)

// -record-histories rewrites the workflow histories that workflows' replay test checks
// every change against. Run it after a deliberate, versioned change to OrderWorkflow:
//
//	go test ./cmd/orderflow -run . -record-histories
var recordHistories = flag.Bool("record-histories", false, "write the order runs' histories to workflows/testdata")

// recordHistory saves the history of the order's (closed) run as
// workflows/testdata/name.revN.json (N: the current revision) when -record-histories is
// given.
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
	var h historypb.History
	it := s.temporal.GetWorkflowHistory(ctx, id, "", false, 0)
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
	// Histories of earlier revisions stay: runs of every revision still open must replay.
	file := fmt.Sprintf("%s.rev%d.json", name, workflows.CurrentRevision)
	if err := os.WriteFile(filepath.Join("..", "..", "workflows", "testdata", file), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
