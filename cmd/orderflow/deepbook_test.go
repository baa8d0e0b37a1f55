package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/order"
)

// deepBookStep is the end-to-end stack's MATCH_FILLS_PER_STEP.
const deepBookStep = 20

// The benchmark sweeps 5,000 resting orders (orderflow bench --deep-book); the suite
// sweeps enough to take several steps of matching.
func TestAMarketOrderSweepsADeepBookInStepsAndEveryCounterpartysRunCompletes(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	const n = deepBookStep*2 + 7
	sells := make([]int64, n)
	var wg sync.WaitGroup
	for i := range sells {
		wg.Go(func() { sells[i] = s.mustPlace(t, limit(int64(100+i), inst, "SELL", "10", 1)) })
	}
	wg.Wait()
	for _, id := range sells {
		s.waitStatus(t, id, "EXECUTING")
	}
	buy := s.mustPlace(t, market(1, inst, "BUY", n))
	s.waitStatus(t, buy, "EXECUTED")

	if tr := s.trades(t, buy); len(tr) != n {
		t.Fatalf("the buy has %d trades, want %d", len(tr), n)
	}
	// Every event a transaction writes carries its start time: the buy's fills came from
	// as many transactions as steps.
	var steps int
	if err := s.pool.QueryRow(context.Background(), `
		SELECT count(DISTINCT created_at) FROM order_events
		WHERE order_id = $1 AND event_type IN ('PARTIALLY_FILLED', 'EXECUTED')`, buy).Scan(&steps); err != nil {
		t.Fatal(err)
	}
	if want := (n + deepBookStep - 1) / deepBookStep; steps != want {
		t.Errorf("the sweep took %d steps, want %d of at most %d fills", steps, want, deepBookStep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range sells {
		var res struct{ Status order.Status }
		if err := s.temporal.GetWorkflow(ctx, s.get(t, id).WorkflowID, "").Get(ctx, &res); err != nil || res.Status != order.Executed {
			t.Fatalf("the run of resting order %d ended with %+v, %v; want EXECUTED", id, res, err)
		}
	}
	var notices int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM fill_notices WHERE aggressor_id = $1`, buy).Scan(&notices); err != nil || notices != 0 {
		t.Errorf("%d fill notices left undelivered (%v), want none", notices, err)
	}
	rep, err := s.auditSettled(ctx, audit.Options{OrderIDs: append(sells, buy), Grace: -1}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		t.Errorf("audit: %s order %d: %s", v.Check, v.OrderID, v.Detail)
	}
}
