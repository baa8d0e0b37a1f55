package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
)

type bookLevel struct {
	Price    json.Number `json:"price"`
	Quantity int64       `json:"quantity"`
	Orders   int64       `json:"orders"`
}

type bookBody struct {
	InstrumentID int64       `json:"instrumentId"`
	Status       string      `json:"status"`
	Bids         []bookLevel `json:"bids"`
	Asks         []bookLevel `json:"asks"`
}

func TestTheBookIsAggregatedByPriceLevelBestFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rest := func(user int64, side, price string, qty int64) int64 {
		return h.mustPlace(fmt.Sprintf(`{"userId":%d,"instrumentId":102,"orderType":%q,"orderKind":"LIMIT","price":%q,"quantity":%d}`, user, side, price, qty)).OrderID
	}
	resting := []int64{
		rest(1, "BUY", "10", 1), rest(2, "BUY", "10.00", 2), rest(1, "BUY", "9.5", 1),
		rest(3, "SELL", "12", 1), rest(3, "SELL", "11", 3),
	}
	rest(1, "BUY", "10.5", 5) // not on the book (yet): not in it
	// As matching leaves them: resting, in arrival order.
	h.exec(`UPDATE orders SET status = 'EXECUTING', on_book = true, book_seq = nextval('order_book_seq') WHERE id = ANY($1)`, resting)

	got := decode[bookBody](t, h.get("/api/v1/instruments/102/book"))
	wantBids := []bookLevel{{"10", 3, 2}, {"9.5", 1, 1}}
	wantAsks := []bookLevel{{"11", 3, 1}, {"12", 1, 1}}
	if got.InstrumentID != 102 || got.Status != "ACTIVE" || !slices.Equal(got.Bids, wantBids) || !slices.Equal(got.Asks, wantAsks) {
		t.Errorf("book = %+v, want bids %v and asks %v", got, wantBids, wantAsks)
	}
	top := decode[bookBody](t, h.get("/api/v1/instruments/102/book?limit=1"))
	if !slices.Equal(top.Bids, wantBids[:1]) || !slices.Equal(top.Asks, wantAsks[:1]) {
		t.Errorf("top of the book = %+v", top)
	}
	if empty := decode[bookBody](t, h.get("/api/v1/instruments/103/book")); len(empty.Bids) != 0 || len(empty.Asks) != 0 {
		t.Errorf("an empty book = %+v", empty)
	}
	wantProblem(t, h.get("/api/v1/instruments/999/book"), http.StatusNotFound, "INSTRUMENT_NOT_FOUND", "")
	wantProblem(t, h.get("/api/v1/instruments/102/book?limit=0"), http.StatusBadRequest, "VALIDATION_FAILED", "limit")
	wantProblem(t, h.get("/api/v1/instruments/x/book"), http.StatusBadRequest, "VALIDATION_FAILED", "id")
}

func TestEveryOrderShowsItsAverageFillPrice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	buy := h.mustPlace(`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"11","quantity":3}`)
	s1 := h.mustPlace(`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":"10","quantity":1}`)
	s2 := h.mustPlace(`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":"10.5","quantity":2}`)
	untraded := h.mustPlace(limitBody(1, `"9"`, 1))
	if buy.AvgFillPrice != nil {
		t.Errorf("a new order's avgFillPrice = %s, want null", buy.AvgFillPrice)
	}
	// As two matches would leave them: the buy took both sells, at their prices.
	h.exec(`INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity)
		VALUES (101, $1, $2, 'BUY', 10, 1), (101, $1, $3, 'BUY', 10.5, 2)`, buy.OrderID, s1.OrderID, s2.OrderID)
	h.exec(`UPDATE orders SET status = 'EXECUTED', remaining_quantity = 0 WHERE id = ANY($1)`, []int64{buy.OrderID, s1.OrderID, s2.OrderID})

	want := map[int64]string{buy.OrderID: "10.33333333", s1.OrderID: "10", s2.OrderID: "10.5"}
	for id, avg := range want {
		o := decode[orderBody](t, h.get(fmt.Sprintf("/api/v1/orders/%d", id)))
		if o.AvgFillPrice == nil || string(*o.AvgFillPrice) != avg || o.FilledQuantity != o.Quantity {
			t.Errorf("order %d: avgFillPrice %v filled %d, want %s and all of it", id, o.AvgFillPrice, o.FilledQuantity, avg)
		}
	}
	page := decode[struct{ Content []orderBody }](t, h.get("/api/v1/orders?userId=1&limit=10"))
	for _, o := range page.Content {
		switch o.OrderID {
		case buy.OrderID:
			if o.AvgFillPrice == nil || string(*o.AvgFillPrice) != "10.33333333" {
				t.Errorf("the list's buy: avgFillPrice %v", o.AvgFillPrice)
			}
		case untraded.OrderID:
			if o.AvgFillPrice != nil {
				t.Errorf("the list's untraded order: avgFillPrice %s, want null", *o.AvgFillPrice)
			}
		}
	}
}
