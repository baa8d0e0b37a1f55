package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// amend sends PATCH /api/v1/orders/{id} with body.
func (s *stack) amend(t *testing.T, id int64, body map[string]any) (int, orderView) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPatch, fmt.Sprintf("%s/api/v1/orders/%d", s.baseURL, id), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	return s.do(t, req)
}

// An amendment and a fill race for a resting order; the order's run applies the
// amendment between fills, so its answer is the truth: amended first (the fill takes
// only the smaller quantity), or refused because the fill came first and left too much
// filled. Never a quantity below what has traded.
func TestAnAmendmentRacingAFillIsAnsweredTruthfully(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	outcomes := map[int]int{}
	var ids []int64
	for round := range 6 {
		sell := s.mustPlace(t, limit(1, inst, "SELL", "100", 10))
		s.waitStatus(t, sell, "EXECUTING")
		var wg sync.WaitGroup
		var code int
		var buy int64
		if round%3 == 2 {
			// The fill surely first: the amendment reaches a run that has heard of it.
			buy = s.mustPlace(t, limit(2, inst, "BUY", "100", 6))
			s.waitStatus(t, sell, "PARTIALLY_FILLED")
			code, _ = s.amend(t, sell, map[string]any{"quantity": 5})
		} else {
			wg.Go(func() { code, _ = s.amend(t, sell, map[string]any{"quantity": 5}) })
			wg.Go(func() { buy = s.mustPlace(t, limit(2, inst, "BUY", "100", 6)) })
			wg.Wait()
		}
		s.waitFor(t, buy, "the buy to rest or end", func(v orderView) bool {
			return v.OrderStatus == "EXECUTED" || v.OrderStatus == "PARTIALLY_FILLED"
		})
		got := s.get(t, sell)
		switch code {
		case http.StatusOK: // amended to 5 first: the buy took all 5
			got = s.waitStatus(t, sell, "EXECUTED")
			if got.Quantity != 5 {
				t.Fatalf("amended first, yet order %d has quantity %d", sell, got.Quantity)
			}
		case http.StatusConflict: // the fill first: 6 of 10 filled, 5 is too few
			if got.Quantity != 10 || got.RemainingQuantity != 4 {
				t.Fatalf("refused after the fill, yet order %d is %+v", sell, got)
			}
		default:
			t.Fatalf("PATCH answered %d", code)
		}
		outcomes[code]++
		var filled int64
		for _, tr := range s.trades(t, sell) {
			filled += tr.qty
		}
		if filled != got.Quantity-got.RemainingQuantity {
			t.Fatalf("order %d: %d traded, but quantity %d − remaining %d", sell, filled, got.Quantity, got.RemainingQuantity)
		}
		s.cancel(t, buy)
		s.cancel(t, sell)
		s.waitFor(t, sell, "the sell to end", func(v orderView) bool { return order.Status(v.OrderStatus).Terminal() })
		ids = append(ids, sell, buy)
	}
	t.Logf("outcomes by status: %v", outcomes)
	s.checkInvariants(t, ids)
}

// A new price replaces the order: the old run ends with its order (REPLACED), and the
// new order gets a run of its own, which puts it on the book at its new price.
func TestAnAmendmentThatReplacesTheOrderHandsItToANewRun(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	old := s.mustPlace(t, limit(1, inst, "BUY", "10", 3))
	s.waitStatus(t, old, "EXECUTING")
	code, repl := s.amend(t, old, map[string]any{"price": "10.5"})
	if code != http.StatusCreated || repl.OrderID == old {
		t.Fatalf("PATCH: %d %+v, want 201 and a new order", code, repl)
	}
	v := s.waitStatus(t, old, "CANCELLED")
	if v.Reason != order.ReasonReplaced {
		t.Errorf("old order's reason %q, want %s", v.Reason, order.ReasonReplaced)
	}
	var res workflows.OrderResult
	if err := s.temporal.GetWorkflow(context.Background(), v.WorkflowID, "").Get(context.Background(), &res); err != nil || res.Status != order.Cancelled {
		t.Errorf("the old run ended with %+v, %v; want CANCELLED", res, err)
	}
	rested := s.waitStatus(t, repl.OrderID, "EXECUTING")
	if rested.Price.String() != "10.5" || rested.Quantity != 3 {
		t.Errorf("replacement %+v, want 3 at 10.5", rested)
	}
	// It trades at its new price.
	sell := s.mustPlace(t, limit(2, inst, "SELL", "10.5", 3))
	s.waitStatus(t, sell, "EXECUTED")
	s.waitStatus(t, repl.OrderID, "EXECUTED")
	s.checkInvariants(t, []int64{old, repl.OrderID, sell})
}

// A replacement keeps its predecessor's expiry: a GTD order repriced still ends EXPIRED
// at the time its client gave, by its new run's timer.
func TestAReplacedGTDOrderKeepsItsExpiry(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	at := time.Now().Add(6 * time.Second)
	old := s.mustPlace(t, gtd(1, inst, "BUY", "10", 2, at))
	s.waitStatus(t, old, "EXECUTING")
	code, repl := s.amend(t, old, map[string]any{"price": "10.25"})
	if code != http.StatusCreated {
		t.Fatalf("PATCH: %d, want 201", code)
	}
	s.waitStatus(t, repl.OrderID, "EXECUTING")
	if time.Now().After(at) {
		t.Fatal("the replacement rested only after the expiry: the test proves nothing")
	}
	v := s.waitStatus(t, repl.OrderID, "EXPIRED")
	if late := time.Since(at); v.Reason != order.ReasonExpiredGTD || late > 20*time.Second {
		t.Errorf("the replacement expired with reason %q %v after the expiry; want %s within seconds", v.Reason, late, order.ReasonExpiredGTD)
	}
	s.checkInvariants(t, []int64{old, repl.OrderID})
}
