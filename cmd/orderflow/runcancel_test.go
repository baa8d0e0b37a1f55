package main

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/order"
)

func TestCancellingARestingOrdersRunFromTheUICancelsTheOrder(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.mustPlace(t, limit(1, inst, "BUY", "10", 3))
	s.waitStatus(t, id, "EXECUTING")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.temporal.CancelWorkflow(ctx, s.get(t, id).WorkflowID, ""); err != nil {
		t.Fatal(err)
	}
	if got := s.waitStatus(t, id, "CANCELLED"); got.Reason != order.ReasonRunCancelled {
		t.Errorf("order after its run was cancelled: %+v, want CANCELLED with reason %s", got, order.ReasonRunCancelled)
	}
	// It left the book: a sell at its price finds nothing.
	sell := s.mustPlace(t, market(2, inst, "SELL", 3))
	if got := s.waitStatus(t, sell, "FAILED"); got.Reason != order.ReasonNoLiquidity {
		t.Errorf("a sell against the cancelled order: %+v, want FAILED with NO_LIQUIDITY", got)
	}
	s.checkInvariants(t, []int64{id, sell})
}
