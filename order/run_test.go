package order_test

import (
	"testing"

	"github.com/orderflow/orderflow/order"
)

func TestWorkflowIDRoundTrips(t *testing.T) {
	for _, c := range []struct {
		id  int64
		key string
		wid string
	}{{42, "", "order-42"}, {42, "3f09a1bc77e2", "order-42-3f09a1bc77e2"}, {9223372036854775807, "ab", "order-9223372036854775807-ab"}} {
		if got := order.WorkflowID(c.id, c.key); got != c.wid {
			t.Errorf("WorkflowID(%d, %q) = %q, want %q", c.id, c.key, got, c.wid)
		}
		id, key, ok := order.ParseWorkflowID(c.wid)
		if !ok || id != c.id || key != c.key {
			t.Errorf("ParseWorkflowID(%q) = %d, %q, %v", c.wid, id, key, ok)
		}
	}
}

func TestParseWorkflowIDRefusesWhatWorkflowIDCannotMake(t *testing.T) {
	for _, wid := range []string{"", "order-", "order-0", "order--1", "order-042", "order-42-", "order-42-a-b", "Order-42", "order-x", "reconcile-1", "order-99999999999999999999"} {
		if id, key, ok := order.ParseWorkflowID(wid); ok {
			t.Errorf("ParseWorkflowID(%q) = %d, %q, true; want refused", wid, id, key)
		}
	}
}
