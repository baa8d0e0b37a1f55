package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/orderbook"
)

// park marks an order as its workflow does when a step exhausts its retries.
func (h *harness) park(id int64, step, lastError string) {
	h.t.Helper()
	h.exec(`UPDATE orders SET needs_attention = true, stalled_step = $2, last_error = $3 WHERE id = $1`, id, step, lastError)
}

func TestOperatorsRetryAndFailOnlyParkedOrders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := h.mustPlace(limitBody(1, `"10"`, 1))
	retry := fmt.Sprintf("/api/v1/admin/orders/%d/retry", o.OrderID)
	fail := fmt.Sprintf("/api/v1/admin/orders/%d/fail", o.OrderID)
	jsonHeader := []string{"Content-Type", "application/json"}

	t.Run("an order that is not parked cannot be retried", func(t *testing.T) {
		wantProblem(t, h.do(http.MethodPost, retry, ""), http.StatusConflict, "ORDER_NOT_PARKED", "")
	})
	t.Run("an order that is not parked cannot be failed", func(t *testing.T) {
		wantProblem(t, h.do(http.MethodPost, fail, `{"reason":"x"}`, jsonHeader...), http.StatusConflict, "ORDER_NOT_PARKED", "")
	})
	t.Run("an unknown order is 404", func(t *testing.T) {
		wantProblem(t, h.do(http.MethodPost, "/api/v1/admin/orders/999999/retry", ""), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	})
	if got := h.cancels.decided(); len(got) != 0 {
		t.Fatalf("decisions reached the workflow for an unparked order: %v", got)
	}

	h.park(o.OrderID, "Execute", "connection refused")
	t.Run("a parked order whose run refuses the decision is 409", func(t *testing.T) {
		h.cancels.mu.Lock()
		h.cancels.refuse = fmt.Errorf("order-1: not parked: %w", orderbook.ErrNotParked)
		h.cancels.mu.Unlock()
		defer func() {
			h.cancels.mu.Lock()
			h.cancels.refuse = nil
			h.cancels.mu.Unlock()
		}()
		wantProblem(t, h.do(http.MethodPost, retry, ""), http.StatusConflict, "ORDER_NOT_PARKED", "")
		wantProblem(t, h.do(http.MethodPost, fail, `{"reason":"x"}`, jsonHeader...), http.StatusConflict, "ORDER_NOT_PARKED", "")
	})
	t.Run("a parked order is retried", func(t *testing.T) {
		res := h.do(http.MethodPost, retry, "")
		if res.status != http.StatusOK {
			t.Fatalf("retry = %d %s, want 200 once the run applied it", res.status, res.body)
		}
		var v struct {
			NeedsAttention bool   `json:"needsAttention"`
			Message        string `json:"message"`
		}
		if err := json.Unmarshal(res.body, &v); err != nil || !v.NeedsAttention {
			t.Errorf("retry body = %s, want the parked order", res.body)
		}
	})
	t.Run("a decision the run is still applying is 202", func(t *testing.T) {
		h.cancels.mu.Lock()
		h.cancels.pending = true
		h.cancels.mu.Unlock()
		defer func() {
			h.cancels.mu.Lock()
			h.cancels.pending = false
			h.cancels.mu.Unlock()
		}()
		if res := h.do(http.MethodPost, retry, ""); res.status != http.StatusAccepted {
			t.Errorf("retry = %d %s, want 202 while the run applies it", res.status, res.body)
		}
	})
	t.Run("a fail needs a reason", func(t *testing.T) {
		wantProblem(t, h.do(http.MethodPost, fail, `{}`, jsonHeader...), http.StatusBadRequest, "VALIDATION_FAILED", "reason")
		wantProblem(t, h.do(http.MethodPost, fail, `{"reason":"  "}`, jsonHeader...), http.StatusBadRequest, "VALIDATION_FAILED", "reason")
		wantProblem(t, h.do(http.MethodPost, fail, `{"reason":"x","extra":1}`, jsonHeader...), http.StatusBadRequest, "VALIDATION_FAILED", "extra")
		wantProblem(t, h.do(http.MethodPost, fail, `{"reason":"x"}`), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "")
	})
	t.Run("a parked order is failed with the reason", func(t *testing.T) {
		res := h.do(http.MethodPost, fail, `{"reason":"venue closed"}`, jsonHeader...)
		if res.status != http.StatusOK {
			t.Fatalf("fail = %d %s, want 200 once the run applied it", res.status, res.body)
		}
	})
	want := []string{
		fmt.Sprintf("retry %d %s", o.OrderID, h.operator()),
		fmt.Sprintf("retry %d %s", o.OrderID, h.operator()),
		fmt.Sprintf("fail %d venue closed %s", o.OrderID, h.operator()),
	}
	if got := h.cancels.decided(); !slices.Equal(got, want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
}

func TestStuckOrdersListsParkedAndStaleOrders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	parked := h.mustPlace(limitBody(1, `"10"`, 1))
	stale := h.mustPlace(limitBody(2, `"10"`, 1))
	fresh := h.mustPlace(limitBody(3, `"10"`, 1))
	resting := h.mustPlace(limitBody(4, `"10"`, 1))
	h.park(parked.OrderID, "Validate", "database unavailable")
	h.exec(`UPDATE orders SET updated_at = now() - interval '1 hour' WHERE id = $1`, stale.OrderID)
	h.exec(`UPDATE orders SET status = 'EXECUTING', updated_at = now() - interval '1 hour' WHERE id = $1`, resting.OrderID)

	res := h.get("/api/v1/admin/orders/stuck?olderThan=10m")
	if res.status != http.StatusOK {
		t.Fatalf("stuck = %d %s", res.status, res.body)
	}
	var got []struct {
		OrderID     int64  `json:"orderId"`
		StalledStep string `json:"stalledStep"`
		LastError   string `json:"lastError"`
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	for _, o := range got {
		ids[o.OrderID] = true
		if o.OrderID == parked.OrderID && (o.StalledStep != "Validate" || o.LastError != "database unavailable") {
			t.Errorf("parked order shows step %q error %q", o.StalledStep, o.LastError)
		}
	}
	if !ids[parked.OrderID] || !ids[stale.OrderID] || ids[fresh.OrderID] || ids[resting.OrderID] {
		t.Errorf("stuck lists %v; want the parked %d and stale %d, not the fresh %d nor the resting %d",
			ids, parked.OrderID, stale.OrderID, fresh.OrderID, resting.OrderID)
	}
	wantProblem(t, h.get("/api/v1/admin/orders/stuck?olderThan=soon"), http.StatusBadRequest, "VALIDATION_FAILED", "olderThan")
}
