package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/audit"
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
				// 200, 202 and 409 are all truthful answers to a cancel racing the
				// execution. 503 says the request was recorded but Temporal did not
				// answer in time (a loaded machine); a client retries it, and so do we.
				code, _ := s.cancel(t, id)
				for try := 0; code == http.StatusServiceUnavailable && try < 3; try++ {
					code, _ = s.cancel(t, id)
				}
				if code != http.StatusOK && code != http.StatusAccepted && code != http.StatusConflict {
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
}

// checkInvariants audits the given orders (package audit): timelines are paths through
// the transition table ending at the order's status, fills add up to the trades, trades
// respect prices, sides and users, the book is not crossed, no two orders share an
// idempotency key, and every order had a workflow run, live while the order is
// not terminal. The orders must have settled: none is spared for being young, and only
// Temporal's visibility gets a few seconds to catch up.
func (s *stack) checkInvariants(t *testing.T, ids []int64) {
	t.Helper()
	rep, err := s.auditSettled(context.Background(), audit.Options{OrderIDs: ids, Grace: -1}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		t.Errorf("%s: order %d: %s", v.Check, v.OrderID, v.Detail)
	}
	if rep.Orders != len(ids) {
		t.Errorf("audited %d orders, want %d", rep.Orders, len(ids))
	}
}
