package orderbook

import (
	"context"
	"testing"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Outside a transaction only one order's change may be written, once, and nothing that
// needs a lock held past its statement: the guard refuses before any statement runs.
func TestAStepWithoutATransactionWritesOneChangeOnly(t *testing.T) {
	ctx := context.Background()
	a, b := queries.Order{ID: 1, Status: string(order.Created)}, queries.Order{ID: 2, Status: string(order.Created)}
	var two changeSet
	for _, o := range []queries.Order{a, b} {
		if err := two.change(o, move{to: order.Validated}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx := &txn{autocommit: true}
	if _, err := tx.apply(ctx, &two); err == nil {
		t.Error("two orders' changes were written without a transaction")
	}
	if _, err := (&txn{autocommit: true, applied: 1}).apply(ctx, &changeSet{changes: 1}); err == nil {
		t.Error("a second write was made without a transaction")
	}
	if _, err := tx.getOrder(ctx, 1, true); err == nil {
		t.Error("a locking read was made without a transaction")
	}
	if err := tx.annotate(ctx, a, order.EventCancelRequested, nil); err == nil {
		t.Error("an annotation was written without a transaction")
	}
}
