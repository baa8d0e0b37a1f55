package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/orderflow/orderflow/order"
)

// TestABurstOfMixedOrdersWithConcurrentCancelsKeepsEveryInvariant places several hundred
// orders (buys and sells, market and limit, prices that cross and rest, two instruments)
// from many goroutines while others cancel some of them, waits for every order to settle,
// and then checks the whole database and Temporal against the invariants.
func TestABurstOfMixedOrdersWithConcurrentCancelsKeepsEveryInvariant(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	instruments := []int64{s.newInstrument(t), s.newInstrument(t)}
	const orders, placers = 300, 12

	var mu sync.Mutex
	var ids []int64
	cancels := make(chan int64, orders)
	var wg sync.WaitGroup
	for p := range placers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			for range orders / placers {
				side := []string{"BUY", "SELL"}[rng.IntN(2)]
				inst := instruments[rng.IntN(len(instruments))]
				user := int64(100 + rng.IntN(20))
				qty := int64(1 + rng.IntN(20))
				var body map[string]any
				if rng.IntN(4) == 0 {
					body = market(user, inst, side, qty)
				} else {
					// Prices around 100 so that buys and sells both cross and rest.
					price := fmt.Sprintf("%d.%02d", 98+rng.IntN(5), rng.IntN(4)*25)
					body = limit(user, inst, side, price, qty)
					if rng.IntN(5) == 0 {
						body["timeInForce"] = "IOC"
					}
				}
				id := s.mustPlace(t, body)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
				if rng.IntN(4) == 0 {
					cancels <- id
				}
			}
		}()
	}
	var cwg sync.WaitGroup
	for range 4 {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for id := range cancels {
				// Any of these is a truthful answer to a cancel racing the execution.
				if code, _ := s.cancel(t, id); code != http.StatusOK && code != http.StatusAccepted && code != http.StatusConflict {
					t.Errorf("cancel %d answered %d", id, code)
				}
			}
		}()
	}
	wg.Wait()
	close(cancels)
	cwg.Wait()

	// Every order settles: terminal, or resting on the book with its run waiting.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var unsettled int
		err := s.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM orders WHERE id = ANY($1) AND status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR')`, ids).Scan(&unsettled)
		if err != nil {
			t.Fatal(err)
		}
		if unsettled == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d orders still unsettled after 3 minutes", unsettled, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.checkInvariants(t, ids)
	s.checkOneRunEach(t, ids)
}

// checkInvariants checks, over the given orders, that fills add up, nothing is overfilled,
// trades respect prices and users, the book is not crossed, and every timeline is a path
// through the transition table ending at the order's status.
func (s *stack) checkInvariants(t *testing.T, ids []int64) {
	t.Helper()
	ctx := context.Background()
	violations := func(name, query string) {
		t.Helper()
		rows, err := s.pool.Query(ctx, query, ids)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, _ := rows.Values()
			t.Errorf("%s: %v", name, vals)
		}
	}
	violations("filled quantity differs from the sum of trades", `
		SELECT o.id, o.quantity, o.remaining_quantity, coalesce(sum(t.quantity), 0)
		FROM orders o LEFT JOIN trades t ON t.buy_order_id = o.id OR t.sell_order_id = o.id
		WHERE o.id = ANY($1)
		GROUP BY o.id HAVING o.quantity - o.remaining_quantity <> coalesce(sum(t.quantity), 0)`)
	violations("a trade breaks a limit price, a side, or trades a user with themselves", `
		SELECT t.id FROM trades t
		JOIN orders b ON b.id = t.buy_order_id JOIN orders s ON s.id = t.sell_order_id
		WHERE (b.id = ANY($1) OR s.id = ANY($1))
		  AND (b.side <> 'BUY' OR s.side <> 'SELL' OR b.user_id = s.user_id
		       OR (b.kind = 'LIMIT' AND t.price > b.price) OR (s.kind = 'LIMIT' AND t.price < s.price)
		       OR (b.kind = 'MARKET' AND s.kind = 'MARKET')
		       OR t.price <> CASE WHEN t.aggressor_side = 'BUY' THEN s.price ELSE b.price END)`)
	violations("the book is crossed", `
		SELECT b.id, s.id FROM orders b JOIN orders s
		  ON s.instrument_id = b.instrument_id AND s.side = 'SELL' AND b.side = 'BUY' AND b.price >= s.price
		WHERE b.id = ANY($1) AND s.id = ANY($1)
		  AND b.status IN ('EXECUTING', 'PARTIALLY_FILLED') AND s.status IN ('EXECUTING', 'PARTIALLY_FILLED')`)
	violations("a resting order is not a limit order with quantity left", `
		SELECT id FROM orders WHERE id = ANY($1) AND status IN ('EXECUTING', 'PARTIALLY_FILLED')
		  AND (kind <> 'LIMIT' OR remaining_quantity = 0 OR time_in_force <> 'GTC')`)

	// Timelines: checked in Go against the transition table itself.
	rows, err := s.pool.Query(ctx, `
		SELECT o.id, o.status, e.seq, e.event_type, coalesce(e.from_status, ''), e.to_status
		FROM orders o JOIN order_events e ON e.order_id = o.id
		WHERE o.id = ANY($1) ORDER BY o.id, e.seq`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type timeline struct {
		status, at string
		seq        int32
	}
	seen := map[int64]*timeline{}
	for rows.Next() {
		var id int64
		var status, typ, from, to string
		var seq int32
		if err := rows.Scan(&id, &status, &seq, &typ, &from, &to); err != nil {
			t.Fatal(err)
		}
		tl := seen[id]
		switch {
		case tl == nil:
			if seq != 1 || typ != string(order.EventOrderPlaced) || to != string(order.Created) {
				t.Errorf("order %d: timeline starts with %s→%s at seq %d, want ORDER_PLACED→CREATED at 1", id, typ, to, seq)
			}
			tl = &timeline{status: status}
			seen[id] = tl
		case seq != tl.seq+1:
			t.Errorf("order %d: seq %d follows %d", id, seq, tl.seq)
		case !order.EventType(typ).ChangesStatus():
			if from != tl.at || to != tl.at {
				t.Errorf("order %d: %s %s→%s while at %s", id, typ, from, to, tl.at)
			}
		case from != tl.at || !order.CanTransition(order.Status(from), order.Status(to)) || typ != string(order.EventFor(order.Status(to))):
			t.Errorf("order %d: event %s %s→%s is not a transition from %s", id, typ, from, to, tl.at)
		}
		tl.seq, tl.at = seq, to
	}
	for _, id := range ids {
		switch tl := seen[id]; {
		case tl == nil:
			t.Errorf("order %d has no events", id)
		case tl.at != tl.status:
			t.Errorf("order %d: last event reaches %s but the order is %s", id, tl.at, tl.status)
		}
	}
}

// checkOneRunEach checks that every order had exactly one workflow run.
func (s *stack) checkOneRunEach(t *testing.T, ids []int64) {
	t.Helper()
	runs := map[string]int{}
	var token []byte
	for {
		resp, err := s.temporal.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowType = 'OrderWorkflow'", NextPageToken: token, PageSize: 1000,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			runs[e.GetExecution().GetWorkflowId()]++
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	for _, id := range ids {
		if n := runs[fmt.Sprintf("order-%d", id)]; n != 1 {
			t.Errorf("order %d had %d workflow runs, want 1", id, n)
		}
	}
}
