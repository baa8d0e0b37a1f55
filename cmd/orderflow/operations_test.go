package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/workflows"
)

// failStatusChanges makes PostgreSQL refuse every change of the given users' orders away
// from status from — a real database fault, scoped to one test — until the returned
// restore function is called.
func (s *stack) failStatusChanges(t *testing.T, from string, users ...int64) (restore func()) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("fault_%d", time.Now().UnixNano())
	var list []string
	for _, u := range users {
		list = append(list, strconv.FormatInt(u, 10))
	}
	stmts := []string{
		fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'injected fault: status change refused'; END $$`, name),
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE UPDATE ON orders FOR EACH ROW
			WHEN (OLD.user_id IN (%s) AND OLD.status = '%s' AND OLD.status <> NEW.status)
			EXECUTE FUNCTION %s()`, name, strings.Join(list, ","), from, name),
	}
	for _, q := range stmts {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	restored := false
	restore = func() {
		if restored {
			return
		}
		restored = true
		for _, q := range []string{"DROP TRIGGER " + name + " ON orders", "DROP FUNCTION " + name + "()"} {
			if _, err := s.pool.Exec(ctx, q); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

// visible waits until a visibility query finds the order's run.
func (s *stack) visible(t *testing.T, query string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err == nil && resp.GetCount() == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility query %q found %d runs after 30s (error %v), want 1", query, resp.GetCount(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stack) command(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, func(k string) string { return s.env[k] }, &out); err != nil {
		t.Fatalf("orderflow %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

func TestAnOrderThatExhaustsItsRetriesIsParkedThenRetriedOrFailedByAnOperator(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	const retried, failed = 4242, 4243
	sell := s.mustPlace(t, limit(1, inst, "SELL", "20", 10))
	s.waitStatus(t, sell, "EXECUTING")

	restore := s.failStatusChanges(t, "SENT_TO_EXECUTOR", retried, failed)
	buy := s.mustPlace(t, market(retried, inst, "BUY", 4))
	doomed := s.mustPlace(t, limit(failed, inst, "BUY", "1", 4))
	for _, id := range []int64{buy, doomed} {
		s.waitFor(t, id, "parked", func(v orderView) bool { return v.NeedsAttention })
		s.visible(t, fmt.Sprintf("OrderId = %d AND NeedsAttention = true", id))
	}
	if v := s.get(t, buy); v.OrderStatus != "SENT_TO_EXECUTOR" {
		t.Fatalf("parked order is %s, want SENT_TO_EXECUTOR (parked before Execute)", v.OrderStatus)
	}
	stuck := s.command(t, "orders", "stuck")
	for _, id := range []int64{buy, doomed} {
		if !strings.Contains(stuck, s.get(t, id).WorkflowID) || !strings.Contains(stuck, "injected fault") {
			t.Errorf("orders stuck does not show order %d with its last error:\n%s", id, stuck)
		}
	}
	// Deciding before the fault is fixed is refused for an order that is not parked, by
	// the API and by the run itself, which keeps nothing for a later park.
	if code, _ := s.post(t, fmt.Sprintf("/api/v1/admin/orders/%d/retry", sell), ""); code != http.StatusConflict {
		t.Errorf("retry of an unparked order = %d, want 409", code)
	}
	sellView := s.get(t, sell)
	_, key, _ := order.ParseWorkflowID(sellView.WorkflowID)
	ops := workflows.NewStarter(s.temporal, workflows.RetryConfig{})
	if _, err := ops.Fail(context.Background(), sell, key, "stale", "operator:test", time.Minute); !errors.Is(err, orderbook.ErrNotParked) {
		t.Errorf("a fail Update to the resting order's run: %v, want it refused as not parked", err)
	}

	s.recordOpenHistory(t, s.get(t, buy).WorkflowID, "", "parked_open")
	restore()
	code, v := s.post(t, fmt.Sprintf("/api/v1/admin/orders/%d/retry", buy), "")
	if code != http.StatusOK || v.NeedsAttention {
		t.Fatalf("retry = %d (needsAttention %v), want 200 with the order resumed", code, v.NeedsAttention)
	}
	s.waitStatus(t, buy, "EXECUTED")
	s.waitStatus(t, sell, "PARTIALLY_FILLED")
	s.command(t, "orders", "fail", strconv.FormatInt(doomed, 10), "--reason", "venue closed")
	// The command returns once the run has applied the decision.
	if v := s.get(t, doomed); v.OrderStatus != "FAILED" || v.Reason != "venue closed" || v.NeedsAttention {
		t.Errorf("failed order = %+v, want reason 'venue closed' and no longer parked", v)
	}

	// As if the outage never happened: one trade, and the timeline only gains the
	// parking and the operator's decision.
	if tr := s.trades(t, buy); len(tr) != 1 || tr[0].qty != 4 || tr[0].price != "20" {
		t.Errorf("trades = %+v, want one of 4 at 20", tr)
	}
	want := []string{"ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTION_STALLED", "OPERATOR_RETRY", "EXECUTING", "EXECUTED"}
	if ev := s.eventTypes(t, buy); !equal(ev, want) {
		t.Errorf("events = %v, want %v", ev, want)
	}
	want = []string{"ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTION_STALLED", "FAILED"}
	if ev := s.eventTypes(t, doomed); !equal(ev, want) {
		t.Errorf("failed order's events = %v, want %v", ev, want)
	}
	s.visible(t, fmt.Sprintf("OrderId = %d AND OrderStatus = 'EXECUTED' AND NeedsAttention = false", buy))
	s.visible(t, fmt.Sprintf("OrderId = %d AND OrderStatus = 'FAILED'", doomed))
	s.checkInvariants(t, []int64{sell, buy, doomed})
	if out := s.command(t, "orders", "stuck"); strings.Contains(out, s.get(t, buy).WorkflowID) {
		t.Errorf("the retried order is still listed as stuck:\n%s", out)
	}
	s.recordHistory(t, buy, "parked_then_retried")
	s.recordHistory(t, doomed, "parked_then_failed")
}

func (s *stack) post(t *testing.T, path, body string) (int, orderView) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.baseURL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.do(t, req)
}
