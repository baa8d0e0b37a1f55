package order_test

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
)

// px parses a price; a typo in a test is a panic, not a silent zero.
func px(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// ask and bid build resting orders whose Seq is their id (the arrival order).
func ask(id, user int64, price string, qty int64) order.Resting {
	return order.Resting{ID: id, UserID: user, Price: px(price), Remaining: qty, Seq: id}
}

func bid(id, user int64, price string, qty int64) order.Resting { return ask(id, user, price, qty) }

// The incoming orders of the tests all belong to user 1; the book to others unless a test
// says so.
const me = 1

func buyLimit(price string, qty int64) order.Incoming {
	return order.Incoming{ID: 1000, UserID: me, Side: order.Buy, Kind: order.Limit, Price: px(price), Remaining: qty, TimeInForce: order.GTC}
}

func sellLimit(price string, qty int64) order.Incoming {
	in := buyLimit(price, qty)
	in.Side = order.Sell
	return in
}

func ioc(in order.Incoming) order.Incoming {
	in.TimeInForce = order.IOC
	return in
}

func buyMarket(qty int64) order.Incoming {
	return order.Incoming{ID: 1000, UserID: me, Side: order.Buy, Kind: order.Market, Remaining: qty, TimeInForce: order.IOC}
}

func sellMarket(qty int64) order.Incoming {
	in := buyMarket(qty)
	in.Side = order.Sell
	return in
}

func fill(restingID int64, price string, qty int64) order.Fill {
	return order.Fill{RestingID: restingID, Price: px(price), Quantity: qty}
}

func formatFills(fs []order.Fill) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("#%d %d@%s", f.RestingID, f.Quantity, f.Price)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func fillsEqual(a, b []order.Fill) bool {
	return slices.EqualFunc(a, b, func(x, y order.Fill) bool {
		return x.RestingID == y.RestingID && x.Quantity == y.Quantity && x.Price.Equal(y.Price)
	})
}

func assertOutcome(t *testing.T, got, want order.Outcome) {
	t.Helper()
	if !fillsEqual(got.Fills, want.Fills) {
		t.Errorf("fills = %s, want %s", formatFills(got.Fills), formatFills(want.Fills))
	}
	if got.Remaining != want.Remaining {
		t.Errorf("remaining = %d, want %d", got.Remaining, want.Remaining)
	}
	if got.Status != want.Status {
		t.Errorf("status = %s, want %s", got.Status, want.Status)
	}
	if got.Reason != want.Reason {
		t.Errorf("reason = %q, want %q", got.Reason, want.Reason)
	}
}

type matchCase struct {
	name string
	in   order.Incoming
	book []order.Resting
	want order.Outcome
}

func runMatchCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertOutcome(t, order.Match(tc.in, tc.book), tc.want)
		})
	}
}

func TestMatchPricePriority(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a buy takes the lowest ask first",
			in:   buyLimit("105", 3),
			book: []order.Resting{ask(1, 2, "102", 5), ask(2, 2, "100", 2), ask(3, 3, "101", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 2), fill(3, "101", 1)}, Status: order.Executed},
		},
		{
			name: "a sell takes the highest bid first",
			in:   sellLimit("95", 3),
			book: []order.Resting{bid(1, 2, "98", 5), bid(2, 2, "100", 2), bid(3, 3, "99", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 2), fill(3, "99", 1)}, Status: order.Executed},
		},
		{
			name: "a market buy takes the lowest ask first",
			in:   buyMarket(4),
			book: []order.Resting{ask(1, 2, "100.10", 5), ask(2, 2, "100.01", 3)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100.01", 3), fill(1, "100.10", 1)}, Status: order.Executed},
		},
		{
			name: "a market sell takes the highest bid first",
			in:   sellMarket(4),
			book: []order.Resting{bid(1, 2, "99.99", 5), bid(2, 2, "100.5", 3)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100.5", 3), fill(1, "99.99", 1)}, Status: order.Executed},
		},
		{
			name: "prices compare as decimals, not as strings",
			in:   buyLimit("100", 1),
			book: []order.Resting{ask(1, 2, "99.9", 1), ask(2, 2, "100.00", 1), ask(3, 2, "9.5", 1)},
			want: order.Outcome{Fills: []order.Fill{fill(3, "9.5", 1)}, Status: order.Executed},
		},
	})
}

func TestMatchTimePriority(t *testing.T) {
	// Ids and Seqs disagree on purpose: Seq, not the id nor the slice position, decides.
	older := func(id, seq int64, price string, qty int64) order.Resting {
		return order.Resting{ID: id, UserID: 2, Price: px(price), Remaining: qty, Seq: seq}
	}
	runMatchCases(t, []matchCase{
		{
			name: "at equal price a buy fills the lower Seq first even when the book is out of order",
			in:   buyLimit("100", 3),
			book: []order.Resting{older(1, 30, "100", 5), older(2, 10, "100", 1), older(3, 20, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 1), fill(3, "100", 2)}, Status: order.Executed},
		},
		{
			name: "at equal price a sell fills the lower Seq first even when the book is out of order",
			in:   sellLimit("100", 3),
			book: []order.Resting{older(1, 30, "100", 5), older(2, 10, "100", 1), older(3, 20, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 1), fill(3, "100", 2)}, Status: order.Executed},
		},
		{
			name: "price beats time: a newer better ask fills before an older worse one",
			in:   buyLimit("101", 2),
			book: []order.Resting{older(1, 1, "101", 5), older(2, 2, "100", 1), older(3, 3, "101", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 1), fill(1, "101", 1)}, Status: order.Executed},
		},
		{
			name: "equal prices written differently are one level ordered by time",
			in:   buyLimit("100", 2),
			book: []order.Resting{older(1, 2, "100.0", 1), older(2, 1, "100.00", 1)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 1), fill(1, "100", 1)}, Status: order.Executed},
		},
	})
}

func TestMatchTradesAtTheRestingPrice(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a buy limit at 105 against an ask at 100 trades at 100",
			in:   buyLimit("105", 5),
			book: []order.Resting{ask(1, 2, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 5)}, Status: order.Executed},
		},
		{
			name: "a sell limit at 95 against a bid at 100 trades at 100",
			in:   sellLimit("95", 5),
			book: []order.Resting{bid(1, 2, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 5)}, Status: order.Executed},
		},
		{
			name: "a buy limit exactly at the ask trades",
			in:   buyLimit("100.25", 1),
			book: []order.Resting{ask(1, 2, "100.25", 1)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100.25", 1)}, Status: order.Executed},
		},
		{
			name: "a sell limit exactly at the bid trades",
			in:   sellLimit("100.25", 1),
			book: []order.Resting{bid(1, 2, "100.25", 1)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100.25", 1)}, Status: order.Executed},
		},
	})
}

func TestMatchPartialFills(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a market buy sweeps several levels and takes part of the last",
			in:   buyMarket(7),
			book: []order.Resting{ask(1, 2, "100", 2), ask(2, 3, "101", 3), ask(3, 2, "102", 10)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 2), fill(2, "101", 3), fill(3, "102", 2)}, Status: order.Executed},
		},
		{
			name: "a limit sell sweeps the bids down to its limit and rests the rest",
			in:   sellLimit("99", 10),
			book: []order.Resting{bid(1, 2, "101", 2), bid(2, 3, "100", 3), bid(3, 2, "99", 1), bid(4, 2, "98", 50)},
			want: order.Outcome{
				Fills:     []order.Fill{fill(1, "101", 2), fill(2, "100", 3), fill(3, "99", 1)},
				Remaining: 4, Status: order.PartiallyFilled,
			},
		},
		{
			name: "a market order against an empty book fails with NO_LIQUIDITY",
			in:   buyMarket(5),
			book: nil,
			want: order.Outcome{Remaining: 5, Status: order.Failed, Reason: order.ReasonNoLiquidity},
		},
		{
			name: "a market sell against an empty book fails with NO_LIQUIDITY",
			in:   sellMarket(5),
			book: []order.Resting{},
			want: order.Outcome{Remaining: 5, Status: order.Failed, Reason: order.ReasonNoLiquidity},
		},
		{
			name: "a market order the book fills only partly has its remainder cancelled",
			in:   buyMarket(5),
			book: []order.Resting{ask(1, 2, "100", 2)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 2)}, Remaining: 3, Status: order.PartiallyCancelled, Reason: order.ReasonMarketRemainder},
		},
		{
			name: "a market order the book fills exactly is executed",
			in:   sellMarket(5),
			book: []order.Resting{bid(1, 2, "100", 2), bid(2, 2, "100", 3)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 2), fill(2, "100", 3)}, Status: order.Executed},
		},
		{
			name: "a limit buy that does not cross rests as EXECUTING with no fills",
			in:   buyLimit("100", 5),
			book: []order.Resting{ask(1, 2, "100.01", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Executing},
		},
		{
			name: "a limit sell that does not cross rests as EXECUTING with no fills",
			in:   sellLimit("100", 5),
			book: []order.Resting{bid(1, 2, "99.99", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Executing},
		},
		{
			name: "a limit order on an empty book rests as EXECUTING",
			in:   buyLimit("100", 5),
			want: order.Outcome{Remaining: 5, Status: order.Executing},
		},
		{
			name: "a limit order partly filled rests as PARTIALLY_FILLED",
			in:   buyLimit("101", 5),
			book: []order.Resting{ask(1, 2, "100", 2), ask(2, 2, "102", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 2)}, Remaining: 3, Status: order.PartiallyFilled},
		},
		{
			name: "a limit order that exhausts the whole book rests as PARTIALLY_FILLED",
			in:   buyLimit("200", 5),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, 3, "101", 1)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 1), fill(2, "101", 1)}, Remaining: 3, Status: order.PartiallyFilled},
		},
	})
}

func TestMatchImmediateOrCancel(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "an IOC limit fully filled is executed",
			in:   ioc(buyLimit("101", 3)),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, 2, "101", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 1), fill(2, "101", 2)}, Status: order.Executed},
		},
		{
			name: "an IOC limit partly filled has its remainder cancelled",
			in:   ioc(buyLimit("100", 3)),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, 2, "101", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 1)}, Remaining: 2, Status: order.PartiallyCancelled, Reason: order.ReasonIOCRemainder},
		},
		{
			name: "an IOC limit with nothing at its price is cancelled, not failed",
			in:   ioc(sellLimit("100", 3)),
			book: []order.Resting{bid(1, 2, "99", 5)},
			want: order.Outcome{Remaining: 3, Status: order.Cancelled, Reason: order.ReasonIOCRemainder},
		},
		{
			name: "an IOC limit against an empty book is cancelled",
			in:   ioc(buyLimit("100", 3)),
			want: order.Outcome{Remaining: 3, Status: order.Cancelled, Reason: order.ReasonIOCRemainder},
		},
	})
}

func TestMatchSelfTradePrevention(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a buy reaching its own ask is cancelled without trading",
			in:   buyLimit("100", 5),
			book: []order.Resting{ask(1, me, "100", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "a sell reaching its own bid is cancelled without trading",
			in:   sellLimit("100", 5),
			book: []order.Resting{bid(1, me, "101", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "an own order behind a better other-user order: fills the other then stops",
			in:   buyLimit("101", 10),
			book: []order.Resting{ask(1, 2, "99", 2), ask(2, me, "100", 5), ask(3, 2, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "99", 2)}, Remaining: 8, Status: order.PartiallyCancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "an own order older at the same price stops the match before the other user's",
			in:   sellLimit("100", 4),
			book: []order.Resting{bid(3, 2, "100", 5), bid(2, me, "100", 5)},
			want: order.Outcome{Remaining: 4, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "a market order reaching its own order is cancelled, not failed",
			in:   buyMarket(5),
			book: []order.Resting{ask(1, me, "100", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "a market order stopped by its own order after a fill is partially cancelled for self-trade",
			in:   sellMarket(5),
			book: []order.Resting{bid(1, 2, "101", 1), bid(2, me, "100", 5), bid(3, 2, "99", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "101", 1)}, Remaining: 4, Status: order.PartiallyCancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "an IOC limit reaching its own order is cancelled for self-trade",
			in:   ioc(buyLimit("100", 5)),
			book: []order.Resting{ask(1, me, "100", 5)},
			want: order.Outcome{Remaining: 5, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
		{
			name: "an own order at a price the limit would not take does not stop anything",
			in:   buyLimit("101", 5),
			book: []order.Resting{ask(1, 2, "100", 2), ask(2, me, "105", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 2)}, Remaining: 3, Status: order.PartiallyFilled},
		},
		{
			name: "an order filled before it reaches its own order is simply executed",
			in:   buyLimit("101", 5),
			book: []order.Resting{ask(1, 2, "99", 5), ask(2, me, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "99", 5)}, Status: order.Executed},
		},
		{
			name: "an own order with nothing left is skipped, not a self-trade",
			in:   buyLimit("100", 5),
			book: []order.Resting{ask(1, me, "99", 0), ask(2, 2, "100", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 5)}, Status: order.Executed},
		},
	})
}

func TestMatchSkipsEmptyRestingEntries(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a zero-remaining ask at the best price is skipped",
			in:   buyLimit("100", 3),
			book: []order.Resting{ask(1, 2, "99", 0), ask(2, 2, "100", 3)},
			want: order.Outcome{Fills: []order.Fill{fill(2, "100", 3)}, Status: order.Executed},
		},
		{
			name: "a book of only empty entries leaves a market order without liquidity",
			in:   buyMarket(3),
			book: []order.Resting{ask(1, 2, "99", 0), ask(2, 3, "100", 0)},
			want: order.Outcome{Remaining: 3, Status: order.Failed, Reason: order.ReasonNoLiquidity},
		},
		{
			name: "a book of only empty entries leaves a limit order resting untouched",
			in:   sellLimit("100", 3),
			book: []order.Resting{bid(1, 2, "101", 0)},
			want: order.Outcome{Remaining: 3, Status: order.Executing},
		},
	})
}

func TestMatchDoesNotModifyTheBook(t *testing.T) {
	book := []order.Resting{ask(3, 2, "102", 5), ask(1, 3, "100", 2), ask(2, 2, "101", 4), ask(4, me, "103", 1)}
	before := slices.Clone(book)
	for _, in := range []order.Incoming{buyLimit("101", 3), buyMarket(20), ioc(buyLimit("102", 100))} {
		order.Match(in, book)
		for i := range book {
			b, w := book[i], before[i]
			if b.ID != w.ID || b.UserID != w.UserID || !b.Price.Equal(w.Price) || b.Remaining != w.Remaining || b.Seq != w.Seq {
				t.Fatalf("after Match(%+v) book[%d] = %+v, want %+v", in, i, b, w)
			}
		}
	}
}

func TestSortBook(t *testing.T) {
	ids := func(b []order.Resting) []int64 {
		out := make([]int64, len(b))
		for i, r := range b {
			out[i] = r.ID
		}
		return out
	}
	book := func() []order.Resting {
		return []order.Resting{
			{ID: 1, Price: px("101"), Seq: 5},
			{ID: 2, Price: px("100"), Seq: 9},
			{ID: 3, Price: px("101.00"), Seq: 2},
			{ID: 4, Price: px("100"), Seq: 1},
			{ID: 5, Price: px("99.5"), Seq: 7},
		}
	}
	t.Run("for a buy the lowest ask comes first, then the oldest", func(t *testing.T) {
		b := book()
		order.SortBook(order.Buy, b)
		if got, want := ids(b), []int64{5, 4, 2, 3, 1}; !slices.Equal(got, want) {
			t.Errorf("order = %v, want %v", got, want)
		}
	})
	t.Run("for a sell the highest bid comes first, then the oldest", func(t *testing.T) {
		b := book()
		order.SortBook(order.Sell, b)
		if got, want := ids(b), []int64{3, 1, 4, 2, 5}; !slices.Equal(got, want) {
			t.Errorf("order = %v, want %v", got, want)
		}
	})
}

func TestStrategyFor(t *testing.T) {
	t.Run("a market order takes any price and never rests", func(t *testing.T) {
		s := order.StrategyFor(order.Market)
		if _, ok := s.(order.MarketStrategy); !ok {
			t.Fatalf("StrategyFor(MARKET) = %T", s)
		}
		in := buyMarket(1)
		for _, p := range []string{"0.01", "100", "1000000"} {
			if !s.Accepts(in, px(p)) {
				t.Errorf("market order refuses %s", p)
			}
		}
		if s.Rests(in) {
			t.Error("market order rests")
		}
		if s.RemainderReason() != order.ReasonMarketRemainder {
			t.Errorf("RemainderReason = %q", s.RemainderReason())
		}
	})
	t.Run("a limit order takes its price or better and a GTC remainder rests", func(t *testing.T) {
		s := order.StrategyFor(order.Limit)
		if _, ok := s.(order.LimitStrategy); !ok {
			t.Fatalf("StrategyFor(LIMIT) = %T", s)
		}
		buy, sell := buyLimit("100", 1), sellLimit("100", 1)
		for _, tc := range []struct {
			in    order.Incoming
			price string
			want  bool
		}{
			{buy, "99.99", true}, {buy, "100", true}, {buy, "100.01", false},
			{sell, "100.01", true}, {sell, "100", true}, {sell, "99.99", false},
		} {
			if got := s.Accepts(tc.in, px(tc.price)); got != tc.want {
				t.Errorf("%s limit 100 accepts %s = %v, want %v", tc.in.Side, tc.price, got, tc.want)
			}
		}
		if !s.Rests(buy) || s.Rests(ioc(buy)) {
			t.Errorf("Rests: GTC %v, IOC %v; want true, false", s.Rests(buy), s.Rests(ioc(buy)))
		}
		if s.RemainderReason() != order.ReasonIOCRemainder {
			t.Errorf("RemainderReason = %q", s.RemainderReason())
		}
	})
}

// TestMatchProperties checks Match's invariants over thousands of random books and orders.
func TestMatchProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(20240601))
	// Prices on a 0.25 grid around 100, built from integers: never through float64.
	price := func() decimal.Decimal { return decimal.New(int64(9600+25*rng.Intn(33)), -2) }

	seen := map[string]int{}
	for iter := range 5000 {
		n := rng.Intn(10)
		book := make([]order.Resting, n)
		seqs := rng.Perm(n) // distinct, so time priority is total
		for i := range book {
			book[i] = order.Resting{
				ID: int64(i + 1), UserID: int64(1 + rng.Intn(4)), Price: price(),
				Remaining: int64(rng.Intn(8)), Seq: int64(seqs[i]),
			}
		}
		in := order.Incoming{
			ID: 9999, UserID: int64(1 + rng.Intn(4)), Side: order.Buy, Kind: order.Limit,
			Price: price(), Remaining: int64(1 + rng.Intn(30)), TimeInForce: order.GTC,
		}
		if rng.Intn(2) == 0 {
			in.Side = order.Sell
		}
		switch rng.Intn(3) {
		case 0:
			in.Kind, in.Price, in.TimeInForce = order.Market, decimal.Zero, order.IOC
		case 1:
			in.TimeInForce = order.IOC
		}
		before := slices.Clone(book)
		out := order.Match(in, book)
		if msg := checkMatch(in, before, book, out); msg != "" {
			t.Fatalf("iteration %d: %s\nin   = %+v\nbook = %+v\nout  = %+v", iter, msg, in, before, out)
		}
		seen[string(out.Status)+" "+out.Reason]++
	}
	// The generator must reach every kind of outcome, or the properties prove little.
	for _, want := range []string{
		"EXECUTED ", "EXECUTING ", "PARTIALLY_FILLED ",
		"FAILED " + order.ReasonNoLiquidity, "PARTIALLY_CANCELLED " + order.ReasonMarketRemainder,
		"CANCELLED " + order.ReasonIOCRemainder, "PARTIALLY_CANCELLED " + order.ReasonIOCRemainder,
		"CANCELLED " + order.ReasonSelfTrade, "PARTIALLY_CANCELLED " + order.ReasonSelfTrade,
	} {
		if seen[want] < 20 {
			t.Errorf("only %d random cases ended %q; widen the generator", seen[want], want)
		}
	}
}

// better reports whether resting order a has priority over b for an incoming order of side s.
func better(s order.Side, a, b order.Resting) bool {
	if !a.Price.Equal(b.Price) {
		if s == order.Buy {
			return a.Price.LessThan(b.Price)
		}
		return a.Price.GreaterThan(b.Price)
	}
	return a.Seq < b.Seq
}

func acceptable(in order.Incoming, p decimal.Decimal) bool {
	switch {
	case in.Kind == order.Market:
		return true
	case in.Side == order.Buy:
		return p.LessThanOrEqual(in.Price)
	default:
		return p.GreaterThanOrEqual(in.Price)
	}
}

// checkMatch returns what is wrong with out as the outcome of matching in against book, or
// "" if nothing is.
func checkMatch(in order.Incoming, before, book []order.Resting, out order.Outcome) string {
	for i := range book {
		if book[i].ID != before[i].ID || book[i].Remaining != before[i].Remaining || !book[i].Price.Equal(before[i].Price) || book[i].Seq != before[i].Seq {
			return fmt.Sprintf("book[%d] modified", i)
		}
	}
	byID := map[int64]order.Resting{}
	for _, r := range book {
		byID[r.ID] = r
	}

	var sum int64
	filled := map[int64]int64{}
	for i, f := range out.Fills {
		r, ok := byID[f.RestingID]
		switch {
		case !ok:
			return fmt.Sprintf("fill %d against unknown resting order %d", i, f.RestingID)
		case f.Quantity <= 0:
			return fmt.Sprintf("fill %d has quantity %d", i, f.Quantity)
		case filled[r.ID] > 0:
			return fmt.Sprintf("resting order %d filled twice", r.ID)
		case f.Quantity > r.Remaining:
			return fmt.Sprintf("fill %d of %d exceeds resting remaining %d", i, f.Quantity, r.Remaining)
		case !f.Price.Equal(r.Price):
			return fmt.Sprintf("fill %d at %s, resting price is %s", i, f.Price, r.Price)
		case !acceptable(in, f.Price):
			return fmt.Sprintf("fill %d at %s is beyond the limit %s", i, f.Price, in.Price)
		case r.UserID == in.UserID:
			return fmt.Sprintf("fill %d trades with the same user %d", i, r.UserID)
		}
		if i > 0 {
			prev := byID[out.Fills[i-1].RestingID]
			if !better(in.Side, prev, r) {
				return fmt.Sprintf("fill %d (#%d at %s) comes after #%d at %s: price-time priority broken", i, r.ID, r.Price, prev.ID, prev.Price)
			}
		}
		// Every fill but the last takes all that its resting order has.
		if i < len(out.Fills)-1 && f.Quantity != r.Remaining {
			return fmt.Sprintf("fill %d takes %d of %d but is not the last fill", i, f.Quantity, r.Remaining)
		}
		filled[r.ID] = f.Quantity
		sum += f.Quantity
	}
	if out.Remaining < 0 || sum != in.Remaining-out.Remaining {
		return fmt.Sprintf("fills sum to %d, but remaining went %d → %d", sum, in.Remaining, out.Remaining)
	}

	// Nothing the order could and should have taken was passed over: every live, acceptable
	// resting order with priority over the last fill was filled, and self-trade is claimed
	// exactly when an own live order at an acceptable price was reached.
	var lastFill *order.Resting
	if len(out.Fills) > 0 {
		r := byID[out.Fills[len(out.Fills)-1].RestingID]
		lastFill = &r
	}
	var firstOwn *order.Resting // the own live acceptable order with the most priority
	for _, r := range book {
		if r.Remaining <= 0 || !acceptable(in, r.Price) {
			continue
		}
		if r.UserID == in.UserID {
			if firstOwn == nil || better(in.Side, r, *firstOwn) {
				firstOwn = &r
			}
			continue
		}
		if lastFill != nil && better(in.Side, r, *lastFill) && filled[r.ID] != r.Remaining {
			return fmt.Sprintf("resting order %d has priority over the last fill but was not fully filled", r.ID)
		}
	}
	if firstOwn != nil {
		for _, f := range out.Fills {
			if better(in.Side, *firstOwn, byID[f.RestingID]) {
				return fmt.Sprintf("filled #%d behind the same user's order #%d", f.RestingID, firstOwn.ID)
			}
		}
	}
	if out.Remaining > 0 && out.Reason != order.ReasonSelfTrade {
		// The match only stops early for self-trade: everything acceptable from others is gone.
		for _, r := range book {
			if r.UserID != in.UserID && r.Remaining > 0 && acceptable(in, r.Price) && filled[r.ID] != r.Remaining {
				return fmt.Sprintf("remaining %d but resting order %d at %s was not taken", out.Remaining, r.ID, r.Price)
			}
		}
	}

	// The status and reason follow from what was filled and what kind of order it is.
	anyFill := len(out.Fills) > 0
	var wantStatus order.Status
	var wantReason string
	switch {
	case out.Remaining == 0:
		wantStatus = order.Executed
	case firstOwn != nil:
		wantStatus, wantReason = order.Cancelled, order.ReasonSelfTrade
		if anyFill {
			wantStatus = order.PartiallyCancelled
		}
	case in.Kind == order.Limit && in.TimeInForce == order.GTC:
		wantStatus = order.Executing
		if anyFill {
			wantStatus = order.PartiallyFilled
		}
	case in.Kind == order.Market && !anyFill:
		wantStatus, wantReason = order.Failed, order.ReasonNoLiquidity
	case in.Kind == order.Market:
		wantStatus, wantReason = order.PartiallyCancelled, order.ReasonMarketRemainder
	case !anyFill:
		wantStatus, wantReason = order.Cancelled, order.ReasonIOCRemainder
	default:
		wantStatus, wantReason = order.PartiallyCancelled, order.ReasonIOCRemainder
	}
	if out.Status != wantStatus || out.Reason != wantReason {
		return fmt.Sprintf("status %s (%q), want %s (%q)", out.Status, out.Reason, wantStatus, wantReason)
	}
	return ""
}

func fok(in order.Incoming) order.Incoming {
	in.TimeInForce = order.FOK
	return in
}

func TestMatchFillOrKill(t *testing.T) {
	runMatchCases(t, []matchCase{
		{
			name: "a FOK the book fills exactly is executed",
			in:   fok(buyLimit("101", 3)),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, 2, "101", 2), ask(3, 2, "102", 5)},
			want: order.Outcome{Fills: []order.Fill{fill(1, "100", 1), fill(2, "101", 2)}, Status: order.Executed},
		},
		{
			name: "a FOK the book is one lot short of does not trade at all",
			in:   fok(buyLimit("101", 4)),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, 2, "101", 2), ask(3, 2, "102", 5)},
			want: order.Outcome{Remaining: 4, Status: order.Cancelled, Reason: order.ReasonFOKNotFilled},
		},
		{
			name: "a FOK against an empty book is cancelled",
			in:   fok(sellLimit("100", 1)),
			want: order.Outcome{Remaining: 1, Status: order.Cancelled, Reason: order.ReasonFOKNotFilled},
		},
		{
			name: "a FOK that would reach its own order before it is filled does not trade",
			in:   fok(buyLimit("101", 3)),
			book: []order.Resting{ask(1, 2, "100", 1), ask(2, me, "100", 5), ask(3, 2, "101", 5)},
			want: order.Outcome{Remaining: 3, Status: order.Cancelled, Reason: order.ReasonSelfTrade},
		},
	})
	t.Run("a FOK shown only the best part of a deeper book kills rather than continue", func(t *testing.T) {
		got := order.MatchPart(fok(buyLimit("101", 3)), []order.Resting{ask(1, 2, "100", 1)}, true)
		assertOutcome(t, got, order.Outcome{Remaining: 3, Status: order.Cancelled, Reason: order.ReasonFOKNotFilled})
	})
	if _, err := order.ParseTimeInForce("FOK"); err != nil {
		t.Errorf("FOK is not a time in force: %v", err)
	}
	if order.StrategyFor(order.Limit).Rests(fok(buyLimit("1", 1))) {
		t.Error("a FOK remainder would rest")
	}
}
