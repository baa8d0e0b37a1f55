package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
)

type bulkResult struct {
	OrderID         int64  `json:"orderId"`
	Status          int    `json:"status"`
	OrderStatus     string `json:"orderStatus"`
	CancelRequested bool   `json:"cancelRequested"`
	ErrorCode       string `json:"errorCode"`
	Message         string `json:"message"`
}

type bulkBody struct {
	Results []bulkResult `json:"results"`
	More    bool         `json:"more"`
}

func TestABulkCancelCancelsTheCallersOpenOrdersOnlyAndTellsEachOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice := bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade))
	operator := bearer(h.key(devstack.OperatorUser, auth.ScopeAdmin))
	bulk := func(who, query string) response {
		return h.do(http.MethodDelete, "/api/v1/orders"+query, "", "Authorization", who)
	}
	place := func(user, instrument int64, side string) int64 {
		return h.mustPlace(fmt.Sprintf(`{"userId":%d,"instrumentId":%d,"orderType":%q,"orderKind":"LIMIT","price":"10","quantity":1}`, user, instrument, side)).OrderID
	}
	buy101, sell102, buy102 := place(1, 101, "BUY"), place(1, 102, "SELL"), place(1, 102, "BUY")
	done1, done2 := place(1, 101, "BUY"), place(1, 102, "SELL")
	h.exec(`UPDATE orders SET status = 'EXECUTED', remaining_quantity = 0 WHERE id = ANY($1)`, []int64{done1, done2})
	bobs := place(2, 101, "BUY")
	cancelEvents := func(ids ...int64) int {
		var n int
		if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM order_events WHERE order_id = ANY($1) AND event_type = 'CANCEL_REQUESTED'`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The workflow of one order cannot be reached: its result says so, the others go on.
	h.cancels.answer(func(_ context.Context, id int64) (bool, error) {
		if id == buy102 {
			return false, errors.New("temporal is down")
		}
		return false, nil
	})
	res := bulk(alice, "?instrumentId=102")
	if res.status != http.StatusMultiStatus {
		t.Fatalf("bulk cancel of instrument 102: %d %s", res.status, res.body)
	}
	got := decode[bulkBody](t, res)
	if len(got.Results) != 2 || got.More {
		t.Fatalf("results = %+v, want orders %d and %d", got, sell102, buy102)
	}
	for _, r := range got.Results {
		switch r.OrderID {
		case sell102:
			if r.Status != http.StatusAccepted || !r.CancelRequested || r.OrderStatus != "CREATED" {
				t.Errorf("order %d: %+v, want 202 and its cancel recorded", r.OrderID, r)
			}
		case buy102:
			if r.Status != http.StatusServiceUnavailable || r.ErrorCode != "SERVICE_UNAVAILABLE" {
				t.Errorf("order %d: %+v, want 503 SERVICE_UNAVAILABLE", r.OrderID, r)
			}
		default:
			t.Errorf("an order not asked for was cancelled: %+v", r)
		}
	}

	h.cancels.answer(nil)
	res = bulk(alice, "?orderType=BUY")
	got = decode[bulkBody](t, res)
	ids := []int64{}
	for _, r := range got.Results {
		ids = append(ids, r.OrderID)
	}
	// Oldest first; the terminal order and the SELL are left out.
	if want := []int64{buy101, buy102}; !slices.Equal(ids, want) {
		t.Errorf("bulk cancel of BUYs covered %v, want %v", ids, want)
	}
	if n := cancelEvents(done1, done2, bobs); n != 0 {
		t.Errorf("%d CANCEL_REQUESTED events on terminal orders or another user's, want 0", n)
	}
	if n := cancelEvents(buy101, sell102, buy102); n != 3 {
		t.Errorf("%d CANCEL_REQUESTED events on alice's open orders, want 3 (one each, however often asked)", n)
	}

	wantProblem(t, bulk(alice, "?instrumentId=x"), http.StatusBadRequest, "VALIDATION_FAILED", "instrumentId")
	wantProblem(t, bulk(alice, "?orderType=HOLD"), http.StatusBadRequest, "VALIDATION_FAILED", "orderType")
	wantProblem(t, bulk(alice, "?userId=2"), http.StatusForbidden, "FORBIDDEN", "userId")
	wantProblem(t, bulk(operator, ""), http.StatusBadRequest, "VALIDATION_FAILED", "userId")
	got = decode[bulkBody](t, bulk(operator, "?userId=2"))
	if len(got.Results) != 1 || got.Results[0].OrderID != bobs || got.Results[0].Status != http.StatusAccepted {
		t.Errorf("the operator's bulk cancel of user 2: %+v, want order %d accepted", got, bobs)
	}
}

func TestABulkCancelIsBoundedAndSaysMoreRemain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	carol := bearer(h.key(3, auth.ScopeRead, auth.ScopeTrade))
	for range 201 {
		h.mustPlace(limitBody(3, `"10"`, 1))
	}
	first := decode[bulkBody](t, h.do(http.MethodDelete, "/api/v1/orders", "", "Authorization", carol))
	if len(first.Results) != 200 || !first.More {
		t.Fatalf("first bulk cancel: %d results, more %v; want 200 and more", len(first.Results), first.More)
	}
	// Orders whose cancel is recorded but not yet applied are still open: the next
	// request covers them again (harmlessly) along with the rest.
	h.exec(`UPDATE orders SET status = 'CANCELLED' WHERE user_id = 3 AND cancel_requested`)
	second := decode[bulkBody](t, h.do(http.MethodDelete, "/api/v1/orders", "", "Authorization", carol))
	if len(second.Results) != 1 || second.More {
		t.Errorf("second bulk cancel: %d results, more %v; want the last order alone", len(second.Results), second.More)
	}
}

func TestABulkCancelTakesEveryOrderOffTheBookWhenTemporalIsDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dave := bearer(h.key(5, auth.ScopeRead, auth.ScopeTrade))
	var ids []int64
	for range 12 {
		ids = append(ids, h.mustPlace(limitBody(5, `"10"`, 1)).OrderID)
	}
	h.cancels.answer(func(ctx context.Context, _ int64) (bool, error) {
		<-ctx.Done() // an unreachable Temporal: every signal hangs
		return false, ctx.Err()
	})
	got := decode[bulkBody](t, h.do(http.MethodDelete, "/api/v1/orders", "", "Authorization", dave))
	if len(got.Results) != len(ids) {
		t.Fatalf("%d results, want %d", len(got.Results), len(ids))
	}
	for _, r := range got.Results {
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("order %d: %+v, want 503 (recorded, run not reached)", r.OrderID, r)
		}
	}
	var requested int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE id = ANY($1) AND cancel_requested AND NOT on_book`, ids).Scan(&requested); err != nil || requested != len(ids) {
		t.Errorf("%d of %d orders have their cancel recorded (%v); want all: none may stay on the book", requested, len(ids), err)
	}
}
