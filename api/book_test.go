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
