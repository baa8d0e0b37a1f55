package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestCancellingAnOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cancel := func(id int64) response {
		return h.do(http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", id), "")
	}
	cancelEvents := func(t *testing.T, id int64) int {
		t.Helper()
		var n int
		if err := h.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM order_events WHERE order_id = $1 AND event_type = 'CANCEL_REQUESTED'`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("an unknown order is not found", func(t *testing.T) {
		wantProblem(t, cancel(999999), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	})

	t.Run("a bad id is refused", func(t *testing.T) {
		wantProblem(t, h.do(http.MethodPost, "/api/v1/orders/x/cancel", ""), http.StatusBadRequest, "VALIDATION_FAILED", "id")
	})

	t.Run("a terminal order cannot be cancelled and records nothing", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.exec(`UPDATE orders SET status = 'EXECUTED', remaining_quantity = 0 WHERE id = $1`, o.OrderID)
		wantProblem(t, cancel(o.OrderID), http.StatusConflict, "ORDER_TERMINAL", "")
		if n := cancelEvents(t, o.OrderID); n != 0 {
			t.Errorf("%d CANCEL_REQUESTED events, want 0", n)
		}
	})

	t.Run("a cancel the workflow has not applied yet answers 202", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.cancels.answer(func(context.Context, int64) (bool, error) { return false, nil })
		res := cancel(o.OrderID)
		if res.status != http.StatusAccepted {
			t.Fatalf("status = %d, want 202; body %s", res.status, res.body)
		}
		got := decode[orderBody](t, res)
		if got.OrderID != o.OrderID || got.OrderStatus != "CREATED" || !got.CancelRequested ||
			got.Message != "Cancel accepted; it will be applied at the next safe point" {
			t.Errorf("answer = %+v", got)
		}
	})

	t.Run("a cancel the workflow applied answers 200 with the cancelled order", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.cancels.answer(applyCancel(h.pool))
		res := cancel(o.OrderID)
		if res.status != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", res.status, res.body)
		}
		got := decode[orderBody](t, res)
		if got.OrderStatus != "CANCELLED" || got.Reason != "CANCELLED_BY_CLIENT" || got.Message != "Order cancelled" {
			t.Errorf("answer = %+v", got)
		}
		calls := h.cancels.recorded()
		if last := calls[len(calls)-1]; last.orderID != o.OrderID || last.wait != testConfig().CancelWait {
			t.Errorf("RequestCancel got %+v, want order %d and wait %s", last, o.OrderID, testConfig().CancelWait)
		}
	})

	t.Run("a repeated cancel records CANCEL_REQUESTED once but asks the workflow each time", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.cancels.answer(func(context.Context, int64) (bool, error) { return false, nil })
		before := len(h.cancels.recorded())
		for range 2 {
			if res := cancel(o.OrderID); res.status != http.StatusAccepted {
				t.Fatalf("status = %d, want 202; body %s", res.status, res.body)
			}
		}
		if n := cancelEvents(t, o.OrderID); n != 1 {
			t.Errorf("%d CANCEL_REQUESTED events, want 1", n)
		}
		if n := len(h.cancels.recorded()) - before; n != 2 {
			t.Errorf("the workflow was asked %d times, want 2", n)
		}
		events := decode[[]event](t, h.get(fmt.Sprintf("/api/v1/orders/%d/events", o.OrderID)))
		if len(events) != 2 {
			t.Fatalf("events = %+v", events)
		}
		e := events[1]
		if e.Seq != 2 || e.EventType != "CANCEL_REQUESTED" || e.FromStatus == nil || *e.FromStatus != "CREATED" ||
			e.ToStatus != "CREATED" || e.Details["requestedBy"] != h.trader(1) {
			t.Errorf("cancel event = %+v", e)
		}
	})

	t.Run("an undeliverable cancel answers 503 but stays recorded for the retry", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.cancels.answer(func(context.Context, int64) (bool, error) { return false, errors.New("temporal: connection refused") })
		p := wantProblem(t, cancel(o.OrderID), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "")
		if p.Message == "" {
			t.Error("the problem does not tell the client to retry")
		}
		if n := cancelEvents(t, o.OrderID); n != 1 {
			t.Errorf("%d CANCEL_REQUESTED events, want 1", n)
		}

		h.cancels.answer(applyCancel(h.pool))
		if res := cancel(o.OrderID); res.status != http.StatusOK {
			t.Fatalf("retry: status = %d, want 200; body %s", res.status, res.body)
		}
		if n := cancelEvents(t, o.OrderID); n != 1 {
			t.Errorf("after the retry, %d CANCEL_REQUESTED events, want 1", n)
		}
	})

	t.Run("a cancel that loses the race to a fill answers 200 with the truth", func(t *testing.T) {
		o := h.mustPlace(limitBody(1, `"10"`, 2))
		h.cancels.answer(func(ctx context.Context, id int64) (bool, error) {
			_, err := h.pool.Exec(ctx, `UPDATE orders SET status = 'EXECUTED', remaining_quantity = 0 WHERE id = $1`, id)
			return false, err
		})
		res := cancel(o.OrderID)
		if res.status != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", res.status, res.body)
		}
		if got := decode[orderBody](t, res); got.OrderStatus != "EXECUTED" || got.Message != "Order reached EXECUTED before the cancel could be applied" {
			t.Errorf("answer = %+v", got)
		}
	})
}

// applyCancel is what the workflow does when it applies a cancel, done directly in SQL.
func applyCancel(pool *pgxpool.Pool) func(context.Context, int64) (bool, error) {
	return func(ctx context.Context, id int64) (bool, error) {
		_, err := pool.Exec(ctx, `UPDATE orders SET status = 'CANCELLED', reason = 'CANCELLED_BY_CLIENT', version = version + 1 WHERE id = $1`, id)
		return err == nil, err
	}
}

func TestAnOrdersETagIsItsVersionAndACancelCanBeConditionalOnIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cancels.answer(func(context.Context, int64) (bool, error) { return false, nil })
	o := h.mustPlace(limitBody(1, `"10"`, 2))
	path := fmt.Sprintf("/api/v1/orders/%d", o.OrderID)

	got := h.get(path)
	tag := got.header.Get("ETag")
	if got.status != http.StatusOK || tag != `"0"` {
		t.Fatalf("GET: %d, ETag %q; want 200 and \"0\"", got.status, tag)
	}
	if res := h.do(http.MethodGet, path, "", "If-None-Match", tag); res.status != http.StatusNotModified || len(res.body) != 0 || res.header.Get("ETag") != tag {
		t.Errorf("GET If-None-Match the current tag: %d %q %s, want 304 with the tag and no body", res.status, res.header.Get("ETag"), res.body)
	}

	// The order changes (as its run would move it): the old tag is stale.
	h.exec(`UPDATE orders SET status = 'EXECUTING', version = version + 1 WHERE id = $1`, o.OrderID)
	if res := h.do(http.MethodGet, path, "", "If-None-Match", tag); res.status != http.StatusOK || res.header.Get("ETag") != `"1"` {
		t.Errorf("GET If-None-Match a stale tag: %d %q, want 200 with \"1\"", res.status, res.header.Get("ETag"))
	}
	stale := h.do(http.MethodPost, path+"/cancel", "", "If-Match", tag)
	wantProblem(t, stale, http.StatusPreconditionFailed, "PRECONDITION_FAILED", "")
	if stale.header.Get("ETag") != `"1"` {
		t.Errorf("412's ETag = %q, want the current \"1\"", stale.header.Get("ETag"))
	}
	if now := decode[orderBody](t, h.get(path)); now.CancelRequested {
		t.Fatal("a cancel whose If-Match failed was recorded")
	}
	var events int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM order_events WHERE order_id = $1 AND event_type = 'CANCEL_REQUESTED'`, o.OrderID).Scan(&events); err != nil || events != 0 {
		t.Fatalf("%d CANCEL_REQUESTED events (%v) after a failed If-Match, want 0", events, err)
	}
	if calls := h.cancels.recorded(); len(calls) != 0 {
		t.Errorf("the workflow was signalled for a cancel whose If-Match failed: %+v", calls)
	}

	wantProblem(t, h.do(http.MethodPost, path+"/cancel", "", "If-Match", `2`), http.StatusBadRequest, "VALIDATION_FAILED", "If-Match")
	// A weak tag never matches If-Match (strong comparison); the current strong one does.
	wantProblem(t, h.do(http.MethodPost, path+"/cancel", "", "If-Match", `W/"1"`), http.StatusPreconditionFailed, "PRECONDITION_FAILED", "")
	res := h.do(http.MethodPost, path+"/cancel", "", "If-Match", `"0", "1"`)
	if res.status != http.StatusAccepted || !decode[orderBody](t, res).CancelRequested || res.header.Get("ETag") != `"2"` {
		t.Errorf("cancel If-Match the current tag: %d %q %s, want 202, recorded, ETag \"3\"", res.status, res.header.Get("ETag"), res.body)
	}
	if res := h.do(http.MethodPost, path+"/cancel", "", "If-Match", "*"); res.status != http.StatusAccepted {
		t.Errorf("cancel If-Match *: %d %s, want 202", res.status, res.body)
	}
}
