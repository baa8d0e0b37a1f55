package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/orderflow/orderflow/order"
)

func limit(user, instrument int64, side string, price string, qty int64) map[string]any {
	return map[string]any{"userId": user, "instrumentId": instrument, "orderType": side,
		"orderKind": "LIMIT", "price": price, "quantity": qty}
}

func market(user, instrument int64, side string, qty int64) map[string]any {
	return map[string]any{"userId": user, "instrumentId": instrument, "orderType": side,
		"orderKind": "MARKET", "quantity": qty}
}

// trade is one row of the trades table.
type trade struct {
	buy, sell, qty int64
	price          string
}

func (s *stack) trades(t *testing.T, orderID int64) []trade {
	t.Helper()
	rows, err := s.pool.Query(context.Background(),
		`SELECT buy_order_id, sell_order_id, quantity, trim_scale(price)::text FROM trades
		 WHERE buy_order_id = $1 OR sell_order_id = $1 ORDER BY id`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []trade
	for rows.Next() {
		var tr trade
		if err := rows.Scan(&tr.buy, &tr.sell, &tr.qty, &tr.price); err != nil {
			t.Fatal(err)
		}
		out = append(out, tr)
	}
	return out
}

// eventTypes returns the order's event types, oldest first.
func (s *stack) eventTypes(t *testing.T, orderID int64) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT event_type FROM order_events WHERE order_id = $1 ORDER BY seq`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestMarketOrderIsFullyFilledAgainstARestingLimit(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	sell := s.mustPlace(t, limit(1, inst, "SELL", "100.50", 10))
	s.waitStatus(t, sell, "EXECUTING")
	buy := s.mustPlace(t, market(2, inst, "BUY", 10))

	s.waitStatus(t, buy, "EXECUTED")
	got := s.waitStatus(t, sell, "EXECUTED")
	if got.RemainingQuantity != 0 {
		t.Errorf("sell remaining = %d, want 0", got.RemainingQuantity)
	}
	trades := s.trades(t, buy)
	if len(trades) != 1 || trades[0] != (trade{buy: buy, sell: sell, qty: 10, price: "100.5"}) {
		t.Errorf("trades = %+v, want one of 10 at the resting price 100.5", trades)
	}
	want := []string{"ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTING", "EXECUTED"}
	if ev := s.eventTypes(t, buy); !equal(ev, want) {
		t.Errorf("buy events = %v, want %v", ev, want)
	}
	s.recordHistory(t, buy, "market_filled")
	s.recordHistory(t, sell, "limit_rested_then_filled")
}

func TestLimitOrderRestsThenIsFilledByALaterOrder(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	buy := s.mustPlace(t, limit(1, inst, "BUY", "99", 5))
	s.waitStatus(t, buy, "EXECUTING")
	s.recordOpenHistory(t, s.get(t, buy).WorkflowID, "", "limit_resting_open")
	sell := s.mustPlace(t, limit(2, inst, "SELL", "98", 5))

	s.waitStatus(t, sell, "EXECUTED")
	s.waitStatus(t, buy, "EXECUTED")
	if tr := s.trades(t, buy); len(tr) != 1 || tr[0].price != "99" || tr[0].qty != 5 {
		t.Errorf("trades = %+v, want 5 at the resting buy's 99", tr)
	}
	// The resting order's run learns of its fill and completes.
	run := s.temporal.GetWorkflow(context.Background(), s.get(t, buy).WorkflowID, "")
	var res struct{ Status order.Status }
	if err := run.Get(context.Background(), &res); err != nil || res.Status != order.Executed {
		t.Errorf("resting order's run ended with %+v, %v; want EXECUTED", res, err)
	}
}

// historyCounts counts the event types of the order's (closed) run.
func (s *stack) historyCounts(t *testing.T, orderID int64) map[enumspb.EventType]int {
	t.Helper()
	ctx := context.Background()
	id := s.get(t, orderID).WorkflowID
	if err := s.temporal.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		t.Fatalf("wait for %s to close: %v", id, err)
	}
	counts := map[enumspb.EventType]int{}
	it := s.temporal.GetWorkflowHistory(ctx, id, "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		counts[e.GetEventType()]++
	}
	return counts
}

// What each order costs the Temporal server: an order that trades against the book runs
// in one workflow task with one search-attribute upsert, and tells the resting order's
// run only about fills that change its status.
func TestOrdersCostOneWorkflowTaskAndRestingRunsOneSignalPerStatusChange(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	buy := s.mustPlace(t, limit(1, inst, "BUY", "99", 10))
	s.waitStatus(t, buy, "EXECUTING")
	var sells []int64
	for i, qty := range []int64{3, 3, 4} { // EXECUTING → PARTIALLY_FILLED → PARTIALLY_FILLED → EXECUTED
		sell := s.mustPlace(t, limit(2, inst, "SELL", "98", qty))
		s.waitStatus(t, sell, "EXECUTED")
		sells = append(sells, sell)
		s.recordHistory(t, sell, fmt.Sprintf("limit_crossing_%d", i+1))
	}
	s.waitStatus(t, buy, "EXECUTED")
	s.recordHistory(t, buy, "limit_rested_filled_in_three")

	got := s.historyCounts(t, buy)
	if n := got[enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]; n != 2 {
		t.Errorf("resting order's run got %d fill signals, want 2 (PARTIALLY_FILLED, then EXECUTED; not the fill that left it PARTIALLY_FILLED)", n)
	}
	for _, sell := range sells {
		got := s.historyCounts(t, sell)
		if n := got[enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]; n != 1 {
			t.Errorf("order %d: %d workflow tasks, want 1", sell, n)
		}
		if n := got[enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]; n != 1 {
			t.Errorf("order %d: %d search-attribute upserts, want 1", sell, n)
		}
		if n := got[enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED]; n != 0 {
			t.Errorf("order %d: the run signalled %d runs itself, want 0 (the Execute activity does)", sell, n)
		}
	}
}

func TestPartiallyFilledOrderCancelledEndsPartiallyCancelled(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	sell := s.mustPlace(t, limit(1, inst, "SELL", "10", 10))
	s.waitStatus(t, sell, "EXECUTING")
	buy := s.mustPlace(t, market(2, inst, "BUY", 4))
	s.waitStatus(t, buy, "EXECUTED")
	s.waitStatus(t, sell, "PARTIALLY_FILLED")
	s.visible(t, fmt.Sprintf("OrderId = %d AND OrderStatus = 'PARTIALLY_FILLED' AND OrderSide = 'SELL'", sell))

	code, v := s.cancel(t, sell)
	if code != http.StatusOK || v.OrderStatus != "PARTIALLY_CANCELLED" || v.RemainingQuantity != 6 {
		t.Fatalf("cancel = %d %+v, want 200 PARTIALLY_CANCELLED with 6 remaining", code, v)
	}
	want := []string{"ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTING", "PARTIALLY_FILLED", "CANCEL_REQUESTED", "PARTIALLY_CANCELLED"}
	if ev := s.eventTypes(t, sell); !equal(ev, want) {
		t.Errorf("sell events = %v, want %v", ev, want)
	}
	if code, _ := s.cancel(t, sell); code != http.StatusConflict {
		t.Errorf("second cancel = %d, want 409 for a terminal order", code)
	}
	s.recordHistory(t, sell, "partially_filled_then_cancelled")
}

func TestMarketOrderAgainstAnEmptyBookFails(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.mustPlace(t, market(1, inst, "BUY", 3))
	v := s.waitStatus(t, id, "FAILED")
	if v.Reason != order.ReasonNoLiquidity || v.RemainingQuantity != 3 {
		t.Errorf("got %+v, want NO_LIQUIDITY with 3 remaining", v)
	}
	s.recordHistory(t, id, "market_no_liquidity")
}

func TestOrdersBreakingInstrumentRulesAreRejected(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	halted := s.newInstrument(t)
	if _, err := s.pool.Exec(context.Background(), `UPDATE instruments SET status = 'HALTED' WHERE id = $1`, halted); err != nil {
		t.Fatal(err)
	}
	active := s.newInstrument(t)
	for _, tc := range []struct {
		name   string
		body   map[string]any
		reason string
	}{
		{"an unknown instrument is rejected", limit(1, 999_999, "BUY", "10", 1), order.ReasonUnknownInstrument},
		{"a halted instrument is rejected", limit(1, halted, "BUY", "10", 1), order.ReasonInstrumentHalted},
		{"a price off the tick is rejected", limit(1, active, "BUY", "10.001", 1), order.ReasonTickSize},
		{"a quantity above the maximum is rejected", limit(1, active, "BUY", "10", 2_000_000), order.ReasonQuantityOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := s.mustPlace(t, tc.body)
			v := s.waitStatus(t, id, "REJECTED")
			if v.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", v.Reason, tc.reason)
			}
			want := []string{"ORDER_PLACED", "REJECTED"}
			if ev := s.eventTypes(t, id); !equal(ev, want) {
				t.Errorf("events = %v, want %v", ev, want)
			}
			if tc.reason == order.ReasonUnknownInstrument {
				s.recordHistory(t, id, "rejected")
			}
		})
	}
}

func TestFiftyConcurrentRequestsWithOneKeyMakeOneOrderAndOneRun(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	body := limit(7, inst, "BUY", "5", 1)
	key := fmt.Sprintf("race-%d", inst)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	ids := make([]int64, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = s.place(t, body, key)
			// And a replay after the race, until the first request has been answered.
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, v := s.place(t, body, key)
				if code != http.StatusConflict || time.Now().After(deadline) {
					ids[i] = v.OrderID
					return
				}
				time.Sleep(20 * time.Millisecond) // poll interval
			}
		}()
	}
	wg.Wait()
	// Each request placed the order, replayed its answer (201 both) or was told the
	// key's first request was in flight (409).
	for i, c := range codes {
		if c != http.StatusCreated && c != http.StatusConflict {
			t.Fatalf("request %d answered %d", i, c)
		}
		if ids[i] != ids[0] || ids[i] == 0 {
			t.Fatalf("request %d's replay got order %d, another's got %d", i, ids[i], ids[0])
		}
	}
	var orders int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE user_id = 7 AND instrument_id = $1`, inst).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if orders != 1 {
		t.Errorf("%d orders, want 1", orders)
	}
	s.waitStatus(t, ids[0], "EXECUTING")
	if n := s.runs(t, ids[0]); n != 1 {
		t.Errorf("%d workflow runs, want 1", n)
	}
	if code, _ := s.place(t, limit(7, inst, "BUY", "6", 1), key); code != http.StatusUnprocessableEntity {
		t.Errorf("same key, different body answered %d, want 422", code)
	}
}

// runs counts the workflow runs of an order.
func (s *stack) runs(t *testing.T, orderID int64) int {
	t.Helper()
	resp, err := s.temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s'", s.get(t, orderID).WorkflowID),
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.GetCount())
}
