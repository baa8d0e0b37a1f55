package order

import (
	"sort"

	"github.com/shopspring/decimal"
)

// Resting is an order on the book, as matching sees it.
type Resting struct {
	ID        int64
	UserID    int64
	Price     decimal.Decimal
	Remaining int64
	// Seq orders resting orders of equal price by arrival at the book (time priority): the
	// book sequence drawn under the instrument's lock when the order first reached
	// matching, not its id, which is assigned before the orders are reordered on their way.
	Seq int64
}

// Incoming is the order being executed against the book.
type Incoming struct {
	ID          int64
	UserID      int64
	Side        Side
	Kind        Kind
	Price       decimal.Decimal // zero for MARKET
	Remaining   int64
	TimeInForce TimeInForce
	// Filled says the order traded before this match (in an earlier step of a sweep
	// that continues), so ending it now cancels a remainder, not the whole order.
	Filled bool
}

// Fill is one trade between the incoming order and a resting one, at the resting price.
type Fill struct {
	RestingID int64
	Price     decimal.Decimal
	Quantity  int64
}

// Outcome is what executing an incoming order did: the fills, and the status and reason
// the incoming order ends the match in. More is set when the book given ran out while the
// order could still take more of it (the caller passed a page of a deeper book): the
// match is not over, and Status is where the order stands until it continues.
type Outcome struct {
	Fills     []Fill
	Remaining int64
	Status    Status
	Reason    string
	More      bool
}

// ExecutionStrategy decides, for one kind of order, which resting prices it may take and
// what becomes of the remainder the book could not fill.
type ExecutionStrategy interface {
	// Accepts reports whether the incoming order may trade at a resting price.
	Accepts(in Incoming, restingPrice decimal.Decimal) bool
	// Rests reports whether an unfilled remainder stays on the book.
	Rests(in Incoming) bool
	// RemainderReason is the reason given when an unfilled remainder is cancelled.
	RemainderReason() string
}

// MarketStrategy takes the best opposite prices until filled and never rests.
type MarketStrategy struct{}

// Accepts implements ExecutionStrategy: a market order takes any price.
func (MarketStrategy) Accepts(Incoming, decimal.Decimal) bool { return true }

// Rests implements ExecutionStrategy: a market order never rests.
func (MarketStrategy) Rests(Incoming) bool { return false }

// RemainderReason implements ExecutionStrategy.
func (MarketStrategy) RemainderReason() string { return ReasonMarketRemainder }

// LimitStrategy takes opposite orders at its price or better; a GTC remainder rests.
type LimitStrategy struct{}

// Accepts implements ExecutionStrategy: a buy takes prices at or below its limit, a sell
// at or above it.
func (LimitStrategy) Accepts(in Incoming, p decimal.Decimal) bool {
	if in.Side == Buy {
		return p.LessThanOrEqual(in.Price)
	}
	return p.GreaterThanOrEqual(in.Price)
}

// Rests implements ExecutionStrategy: a GTC, DAY or GTD remainder rests.
func (LimitStrategy) Rests(in Incoming) bool { return in.TimeInForce.Rests() }

// RemainderReason implements ExecutionStrategy.
func (LimitStrategy) RemainderReason() string { return ReasonIOCRemainder }

// StrategyFor returns the execution strategy for orders of kind k.
func StrategyFor(k Kind) ExecutionStrategy {
	if k == Market {
		return MarketStrategy{}
	}
	return LimitStrategy{}
}

// SortBook orders the opposite side of the book by price-time priority for an incoming
// order of side s: lowest sell first for a buy, highest buy first for a sell, then oldest.
func SortBook(s Side, book []Resting) {
	sort.SliceStable(book, func(i, j int) bool {
		if c := book[i].Price.Cmp(book[j].Price); c != 0 {
			return (s == Buy) == (c < 0)
		}
		return book[i].Seq < book[j].Seq
	})
}

// Match executes in against book, the resting orders of the opposite side (in any order:
// Match applies price-time priority itself). It does not modify book.
//
// Self-trade prevention is "cancel newest": reaching a resting order of the same user at
// a price it would trade at stops the match and cancels the incoming remainder, so the
// book never crosses and no user trades with themselves.
func Match(in Incoming, book []Resting) Outcome { return MatchPart(in, book, false) }

// MatchPart is Match against the best part of a deeper book: truncated says that book
// holds only the best of the acceptable resting orders. When the incoming order takes
// all of them and still has quantity left, the outcome has More set, and the caller
// continues with the next part of the book.
func MatchPart(in Incoming, book []Resting, truncated bool) Outcome {
	strategy := StrategyFor(in.Kind)
	sorted := append([]Resting(nil), book...)
	SortBook(in.Side, sorted)

	out := Outcome{Remaining: in.Remaining}
	selfTrade := false
	for _, r := range sorted {
		if out.Remaining == 0 || !strategy.Accepts(in, r.Price) {
			break
		}
		if r.Remaining <= 0 {
			continue
		}
		if r.UserID == in.UserID {
			selfTrade = true
			break
		}
		q := min(out.Remaining, r.Remaining)
		out.Fills = append(out.Fills, Fill{RestingID: r.ID, Price: r.Price, Quantity: q})
		out.Remaining -= q
	}

	if in.TimeInForce == FOK && out.Remaining > 0 {
		// All or nothing, decided here, under the instrument's lock, before anything is
		// written: what the book shown cannot fill now is not filled at all, and a FOK
		// never continues into a deeper part of the book in a later step.
		reason := ReasonFOKNotFilled
		if selfTrade {
			reason = ReasonSelfTrade
		}
		return Outcome{Remaining: in.Remaining, Status: Cancelled, Reason: reason}
	}
	filled := out.Remaining < in.Remaining || in.Filled
	switch {
	case truncated && !selfTrade && out.Remaining > 0:
		out.More = true
		out.Status = Executing
		if filled {
			out.Status = PartiallyFilled
		}
	case out.Remaining == 0:
		out.Status = Executed
	case selfTrade && filled:
		out.Status, out.Reason = PartiallyCancelled, ReasonSelfTrade
	case selfTrade:
		out.Status, out.Reason = Cancelled, ReasonSelfTrade
	case strategy.Rests(in) && filled:
		out.Status = PartiallyFilled
	case strategy.Rests(in):
		out.Status = Executing
	case filled:
		out.Status, out.Reason = PartiallyCancelled, strategy.RemainderReason()
	case in.Kind == Market:
		out.Status, out.Reason = Failed, ReasonNoLiquidity
	default:
		out.Status, out.Reason = Cancelled, strategy.RemainderReason()
	}
	return out
}
