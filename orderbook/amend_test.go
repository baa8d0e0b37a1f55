package orderbook_test

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

func (b *book) amend(id, qty int64, price string) orderbook.AmendResult {
	b.t.Helper()
	req := orderbook.AmendRequest{OrderID: id, AmendID: rand.Text(), Quantity: qty}
	if price != "" {
		req.Price = decimal.NewNullDecimal(decimal.RequireFromString(price))
	}
	res, err := b.svc.Amend(b.ctx, req)
	if err != nil {
		b.t.Fatalf("amend %d: %v", id, err)
	}
	return res
}

func TestASmallerQuantityIsAmendedInPlaceAndKeepsTimePriority(t *testing.T) {
	b := newBook(t)
	first := b.run(1, 101, order.Sell, "100", 10)
	second := b.run(2, 101, order.Sell, "100", 5)
	b.run(3, 101, order.Buy, "100", 4) // first: 6 left of 10

	res := b.amend(first.ID, 7, "")
	if res.Outcome != orderbook.AmendedInPlace {
		t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Detail, orderbook.AmendedInPlace)
	}
	got := b.order(first.ID)
	if got.Quantity != 7 || got.RemainingQuantity != 3 || *got.BookSeq != *first.BookSeq || !got.OnBook {
		t.Fatalf("amended order: quantity %d remaining %d seq %d on book %v; want 7, 3, seq %d kept, on the book",
			got.Quantity, got.RemainingQuantity, *got.BookSeq, got.OnBook, *first.BookSeq)
	}
	evs := b.events(first.ID)
	if last := evs[len(evs)-1]; order.EventType(last.EventType) != order.EventAmended || last.ToStatus != string(order.PartiallyFilled) {
		t.Fatalf("last event %s → %s, want AMENDED in PARTIALLY_FILLED", last.EventType, last.ToStatus)
	}
	// Still first in line: the next buy takes it before the order behind it.
	buy := b.run(4, 101, order.Buy, "100", 3)
	wantStatus(t, buy, order.Executed, "")
	wantStatus(t, b.order(first.ID), order.Executed, "")
	wantStatus(t, b.order(second.ID), order.Executing, "")
	b.audited()
}

func TestANewPriceReplacesTheOrderWithALinkedOneAtTheBackOfTheLine(t *testing.T) {
	b := newBook(t)
	old := b.run(1, 101, order.Sell, "101", 10)
	b.run(3, 101, order.Buy, "101", 4) // 6 left
	other := b.run(2, 101, order.Sell, "100", 5)

	res := b.amend(old.ID, 0, "100")
	if res.Outcome != orderbook.AmendReplaced || res.Replacement == nil {
		t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Detail, orderbook.AmendReplaced)
	}
	wantStatus(t, b.order(old.ID), order.PartiallyCancelled, order.ReasonReplaced)
	repl := *res.Replacement
	if *repl.ReplacesOrderID != old.ID || repl.Quantity != 6 || !repl.Price.Decimal.Equal(decimal.NewFromInt(100)) ||
		order.Status(repl.Status) != order.Created || repl.TimeInForce != old.TimeInForce {
		t.Fatalf("replacement %+v: want a CREATED GTC order for 6 at 100 that replaces %d", repl, old.ID)
	}
	if got, err := b.svc.Replacement(b.ctx, old.ID); err != nil || got.ID != repl.ID {
		t.Fatalf("replacement of %d: %+v, %v", old.ID, got, err)
	}
	// The replacement is a new order: its run places it behind what rests at its price.
	b.dispatch(repl.ID)
	b.match(repl.ID)
	buy := b.run(4, 101, order.Buy, "100", 5)
	wantStatus(t, buy, order.Executed, "")
	wantStatus(t, b.order(other.ID), order.Executed, "")
	wantStatus(t, b.order(repl.ID), order.Executing, "")
	b.audited()
}

func TestAnAmendmentIsRefusedAndChangesNothingWhenItCannotApply(t *testing.T) {
	b := newBook(t)
	rest := b.run(1, 101, order.Sell, "100", 10)
	b.run(2, 101, order.Buy, "100", 4)
	before := b.order(rest.ID)
	stale := before.Version - 1
	cases := []struct {
		name string
		req  orderbook.AmendRequest
		want orderbook.AmendOutcome
	}{
		{"at or below the filled quantity", orderbook.AmendRequest{Quantity: 4}, orderbook.AmendBelowFilled},
		{"off the tick", orderbook.AmendRequest{Price: decimal.NewNullDecimal(decimal.RequireFromString("100.001"))}, orderbook.AmendInvalid},
		{"a stale version", orderbook.AmendRequest{Quantity: 8, IfVersion: &stale}, orderbook.AmendPreconditionFailed},
		{"nothing to change", orderbook.AmendRequest{Quantity: 10}, orderbook.AmendUnchanged},
	}
	for _, tc := range cases {
		tc.req.OrderID, tc.req.AmendID = rest.ID, rand.Text()
		res, err := b.svc.Amend(b.ctx, tc.req)
		if err != nil || res.Outcome != tc.want {
			t.Errorf("%s: %s (%s), %v; want %s", tc.name, res.Outcome, res.Detail, err, tc.want)
		}
	}
	if after := b.order(rest.ID); after.Version != before.Version || len(b.events(rest.ID)) != len(b.events(before.ID)) {
		t.Fatalf("a refused amendment changed the order: version %d → %d", before.Version, after.Version)
	}
	if _, err := b.svc.RecordCancel(b.ctx, rest.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	if res := b.amend(rest.ID, 8, ""); res.Outcome != orderbook.AmendNotAmendable {
		t.Fatalf("amend after a cancel request: %s, want %s", res.Outcome, orderbook.AmendNotAmendable)
	}
	market := b.place(3, 101, order.Buy, "", 1)
	if res := b.amend(market.ID, 2, ""); res.Outcome != orderbook.AmendNotAmendable {
		t.Fatalf("amend of a CREATED order: %s, want %s", res.Outcome, orderbook.AmendNotAmendable)
	}
	b.audited()
}

func TestARetriedAmendmentIsAppliedOnce(t *testing.T) {
	b := newBook(t)
	for _, price := range []string{"", "99"} {
		rest := b.run(1, 101, order.Sell, "100", 10)
		req := orderbook.AmendRequest{OrderID: rest.ID, AmendID: rand.Text(), Quantity: 8}
		if price != "" {
			req.Price = decimal.NewNullDecimal(decimal.RequireFromString(price))
		}
		first, err := b.svc.Amend(b.ctx, req)
		if err != nil || !first.Outcome.Applied() {
			t.Fatalf("amend: %+v, %v", first, err)
		}
		events := len(b.events(rest.ID))
		again, err := b.svc.Amend(b.ctx, req) // the answer was lost: the run retries
		if err != nil || again.Outcome != first.Outcome {
			t.Fatalf("retry: %s, %v; want %s", again.Outcome, err, first.Outcome)
		}
		if first.Replacement != nil && again.Replacement.ID != first.Replacement.ID {
			t.Fatalf("the retry placed a second replacement %d (first %d)", again.Replacement.ID, first.Replacement.ID)
		}
		if n := len(b.events(rest.ID)); n != events {
			t.Fatalf("the retry wrote %d more events", n-events)
		}
	}
	b.audited()
}

// An amendment racing a fill is judged against the order as the fill left it, or the
// fill against the order as amended: never a quantity below what was filled, and the
// filled quantity always adds up to the trades.
func TestAnAmendmentRacingAFillIsAppliedBeforeOrAfterIt(t *testing.T) {
	b := newBook(t)
	for round := range 20 {
		rest := b.run(1, 101, order.Sell, "100", 10)
		buy := b.place(2, 101, order.Buy, "", 6)
		b.dispatch(buy.ID)
		var wg sync.WaitGroup
		var res orderbook.AmendResult
		var amendErr, matchErr error
		wg.Go(func() {
			res, amendErr = b.svc.Amend(b.ctx, orderbook.AmendRequest{OrderID: rest.ID, AmendID: rand.Text(), Quantity: 5})
		})
		wg.Go(func() { _, matchErr = b.matchRetrying(buy.ID) })
		wg.Wait()
		if amendErr != nil || matchErr != nil {
			t.Fatalf("round %d: amend %v, match %v", round, amendErr, matchErr)
		}
		got, filled := b.order(rest.ID), sumQuantity(b.trades(rest.ID))
		switch res.Outcome {
		case orderbook.AmendedInPlace: // first: 5, and the buy took all of it
			if got.Quantity != 5 || filled != 5 || order.Status(got.Status) != order.Executed {
				t.Fatalf("round %d: amended first, then %+v with %d filled; want 5 filled, EXECUTED", round, got, filled)
			}
		case orderbook.AmendBelowFilled: // the fill first: 6 filled of 10, 5 is too few
			if got.Quantity != 10 || filled != 6 || order.Status(got.Status) != order.PartiallyFilled {
				t.Fatalf("round %d: refused after the fill, %+v with %d filled", round, got, filled)
			}
		default:
			t.Fatalf("round %d: outcome %s (%s)", round, res.Outcome, res.Detail)
		}
		if _, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: buy.ID}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: rest.ID}); err != nil {
			t.Fatal(err)
		}
	}
	b.audited()
}

func sumQuantity(trades []queries.Trade) int64 {
	var n int64
	for _, t := range trades {
		n += t.Quantity
	}
	return n
}
