package orderbook

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Bounds of one step of matching. A step writes at most Config.MaxFillsPerStep fills (a
// trade, the resting order's change and two events each) in one statement and one
// transaction, so no transaction holding the instrument's lock grows with the depth of
// the book; a deeper sweep continues in the next step. The book is read bookPage rows at
// a time.
const (
	DefaultMaxFillsPerStep = 1000
	bookPage               = 250
	// inlineNotices bounds the notices a step hands back for delivery at once: an
	// ordinary match's handful, told without waiting for DeliverFillNotices.
	inlineNotices = 32
)

// FillNotice is a resting order's run to tell that a fill left its order in Status.
// Notices are kept in fill_notices until delivered (Deliver deletes them), so none is
// lost to a crash or a failed signal: DeliverFillNotices sends whatever no one else did.
type FillNotice struct {
	ID      int64
	OrderID int64
	RunKey  string // the resting order's, which names its run
	Status  order.Status
}

// MatchResult is where an order stands after one step of matching.
type MatchResult struct {
	Order queries.Order
	// More says the sweep is not over: the order is off the book, mid-match, and its
	// next step continues where this one stopped.
	More bool
	// Notices are fills of this order, claimed for the caller to deliver at once (with
	// Deliver): at most inlineNotices, and only from the step that ends the sweep. The
	// others wait for DeliverFillNotices, which Match wakes, so a deep sweep's steps never
	// wait for the engine to take thousands of signals.
	Notices []FillNotice
}

// Match runs one step of matching for order id, under its instrument's lock:
//
//   - On the first step (SENT_TO_EXECUTOR) the order draws its book sequence, its time
//     priority, and moves to EXECUTING.
//   - It trades with the opposite side of the book in price-time priority (best price,
//     then earliest arrival), at most Config.MaxFillsPerStep fills, and ends resting on
//     the book (a GTC LIMIT remainder), done (EXECUTED, or its remainder cancelled), or
//     mid-sweep (More), to continue in the next step.
//   - An order whose cancel was recorded never trades: the step applies the cancel.
//   - On a halted instrument nothing trades: the order's remainder is cancelled
//     (CANCELLED or PARTIALLY_CANCELLED, reason INSTRUMENT_HALTED).
//
// A step for an order that is resting or has ended changes nothing, so a retry after a
// lost reply is safe. It returns ErrNotFound, ErrInstrumentNotFound, or an error
// wrapping ErrStale when a resting order it was about to trade with changed meanwhile
// (retry the step).
func (s *Service) Match(ctx context.Context, id int64) (res MatchResult, err error) {
	var left bool // notices written that this step does not hand back
	err = s.inTx(ctx, func(tx *txn) error {
		o, err := tx.getOrder(ctx, id, false)
		if err != nil {
			return err
		}
		written := 0
		// A first step that wrote no notice leaves none to claim: no earlier step of this
		// order can have written any (a retry after a commit finds the order past its
		// first step under the lock), which spares the claim's round trip for every
		// order that rests without trading.
		first := false
		if matchable(o) {
			if o, res.More, written, first, err = tx.matchStep(ctx, o, s.maxFills, s.marketMaxAge); err != nil {
				return err
			}
		}
		res.Order = o
		if res.More {
			left = written > 0
			return nil
		}
		if first && written == 0 {
			return nil
		}
		claimed, err := tx.ClaimFillNotices(ctx, queries.ClaimFillNoticesParams{
			LeaseSeconds: s.noticeLease.Seconds(), AggressorID: &id, MaxRows: inlineNotices,
		})
		if err != nil {
			return fmt.Errorf("claim fill notices of order %d: %w", id, err)
		}
		res.Notices = notices(claimed)
		left = written > len(claimed)
		return nil
	})
	if err == nil && left {
		s.wakeNotifier()
	}
	return res, err
}

// matchable reports whether a step of matching has work to do for o: its first step,
// the next one of a sweep, or a recorded cancel to apply instead.
func matchable(o queries.Order) bool {
	st := order.Status(o.Status)
	switch {
	case st.Terminal():
		return false
	case o.CancelRequested:
		return st == order.SentToExecutor || st.Resting()
	case st == order.SentToExecutor:
		return true
	}
	return st.Resting() && !o.OnBook // mid-sweep
}

// matchStep is one step of Match for o, which matchable accepted, in tx. It returns the
// order as it left it, whether the sweep continues, how many fill notices it wrote, and
// whether it was the order's first step (SENT_TO_EXECUTOR under the lock).
func (tx *txn) matchStep(ctx context.Context, o queries.Order, maxFills int, marketMaxAge time.Duration) (_ queries.Order, more bool, notices int, first bool, err error) {
	inst, found, err := tx.lockInstrument(ctx, o.InstrumentID)
	if err != nil {
		return o, false, 0, false, err
	}
	if !found {
		return o, false, 0, false, fmt.Errorf("order %d: instrument %d: %w", o.ID, o.InstrumentID, ErrInstrumentNotFound)
	}
	// Re-read under the lock: a cancel or another step may have committed meanwhile.
	if o, err = tx.getOrder(ctx, o.ID, true); err != nil || !matchable(o) {
		return o, false, 0, false, err
	}
	st := order.Status(o.Status)
	if o.CancelRequested {
		o, err = tx.cancel(ctx, o, CancelRequest{OrderID: o.ID})
		return o, false, 0, false, err
	}
	if inst.Status != InstrumentActive {
		o, err = tx.transition(ctx, o, move{to: remainderCancelled(st), reason: order.ReasonInstrumentHalted}, nil)
		return o, false, 0, false, err
	}
	// A DAY or GTD order that reaches the book after its expiry expires there.
	if st == order.SentToExecutor && o.ExpireAt != nil && !o.ExpireAt.After(time.Now()) {
		o, err = tx.transition(ctx, o, move{to: order.Expired, reason: expiryReason(o)}, nil)
		return o, false, 0, false, err
	}
	// A MARKET order that reaches the book long after its 201 would fill at prices its
	// client never saw: it expires instead. Ages are on the database's clock (created_at)
	// against this worker's, which NTP keeps within milliseconds of it.
	if age := time.Since(o.CreatedAt); st == order.SentToExecutor && order.Kind(o.Kind) == order.Market && marketMaxAge > 0 && age > marketMaxAge {
		o, err = tx.transition(ctx, o, move{to: order.Expired, reason: order.ReasonStale},
			map[string]any{"ageMs": age.Milliseconds(), "maxAgeMs": marketMaxAge.Milliseconds()})
		return o, false, 0, false, err
	}

	cs := changeSet{arg: queries.ApplyChangesParams{InstrumentID: o.InstrumentID, AggressorSide: o.Side, AggressorID: o.ID}}
	first = st == order.SentToExecutor
	if first {
		if err := cs.event(event{orderID: o.ID, typ: order.EventExecuting, from: st, to: order.Executing}); err != nil {
			return o, false, 0, false, err
		}
		st = order.Executing
	}
	book, truncated, err := tx.loadBook(ctx, o, maxFills)
	if err != nil {
		return o, false, 0, false, err
	}
	in := order.Incoming{
		ID: o.ID, UserID: o.UserID, Side: order.Side(o.Side), Kind: order.Kind(o.Kind),
		Price: o.Price.Decimal, Remaining: o.RemainingQuantity, TimeInForce: order.TimeInForce(o.TimeInForce),
		Filled: o.RemainingQuantity < o.Quantity,
	}
	resting := make([]order.Resting, len(book))
	byID := make(map[int64]queries.ListBookRow, len(book))
	for i, r := range book {
		resting[i] = order.Resting{ID: r.ID, UserID: r.UserID, Price: r.Price.Decimal, Remaining: r.RemainingQuantity, Seq: *r.BookSeq}
		byID[r.ID] = r
	}
	outcome := order.MatchPart(in, resting, truncated)

	remaining := o.RemainingQuantity
	for _, f := range outcome.Fills {
		r := byID[f.RestingID]
		if err := cs.fill(o, st, remaining, r, f); err != nil {
			return o, false, 0, false, err
		}
		remaining -= f.Quantity
		st = filledStatus(remaining)
	}
	if st != outcome.Status {
		if err := cs.event(event{orderID: o.ID, typ: order.EventFor(outcome.Status), from: st, to: outcome.Status,
			details: reasonDetails(outcome.Reason)}); err != nil {
			return o, false, 0, false, err
		}
	}
	rests := !outcome.More && outcome.Status.Resting()
	cs.setStatus(o, outcome.Status, outcome.Remaining, outcome.Reason, rests, first)
	rows, err := tx.apply(ctx, &cs)
	if err != nil {
		return o, false, 0, false, fmt.Errorf("match order %d: %w", o.ID, err)
	}
	return rows[o.ID], outcome.More, len(cs.arg.NoticeOrderIds), first, nil
}

// fill adds one fill of the aggressor o (in status st with remaining left before it)
// against resting order r: the trade, r's change and event, o's event, and r's notice
// when the fill changes r's status.
func (cs *changeSet) fill(o queries.Order, st order.Status, remaining int64, r queries.ListBookRow, f order.Fill) error {
	buy, sell := o.ID, r.ID
	if order.Side(o.Side) == order.Sell {
		buy, sell = sell, buy
	}
	cs.trade(buy, sell, f.Price, f.Quantity)

	restingLeft := r.RemainingQuantity - f.Quantity
	rFrom, rTo := order.Status(r.Status), filledStatus(restingLeft)
	cs.setStatus(queries.Order{ID: r.ID, Version: r.Version}, rTo, restingLeft, "", restingLeft > 0, false)
	if err := cs.event(event{orderID: r.ID, typ: order.EventFor(rTo), from: rFrom, to: rTo, tradeWith: r.ID,
		details: fillDetails(f, o.ID, restingLeft)}); err != nil {
		return err
	}
	if rTo != rFrom {
		cs.notice(r.ID, rTo)
	}
	left := remaining - f.Quantity
	return cs.event(event{orderID: o.ID, typ: order.EventFor(filledStatus(left)), from: st, to: filledStatus(left), tradeWith: r.ID,
		details: fillDetails(f, r.ID, left)})
}

// filledStatus is the status of an order that a fill left with remaining to fill.
func filledStatus(remaining int64) order.Status {
	if remaining == 0 {
		return order.Executed
	}
	return order.PartiallyFilled
}

func fillDetails(f order.Fill, counterparty, remaining int64) map[string]any {
	return map[string]any{
		"fillQuantity": f.Quantity, "fillPrice": f.Price.String(),
		"counterpartyOrderId": counterparty, "remainingQuantity": remaining,
	}
}

func reasonDetails(reason string) map[string]any {
	if reason == "" {
		return nil
	}
	return map[string]any{"reason": reason}
}

// loadBook reads the best of the opposite side of o's book, at prices o may take, in
// priority order, page by page with a keyset cursor, until it holds enough quantity to
// fill o or maxFills orders. truncated says the book may hold more that o could take.
func (tx *txn) loadBook(ctx context.Context, o queries.Order, maxFills int) (book []queries.ListBookRow, truncated bool, err error) {
	side := order.Side(o.Side).Opposite()
	maxKey := "Infinity" // a MARKET order takes any price
	if order.Kind(o.Kind) == order.Limit {
		maxKey = o.Price.Decimal.String()
		if side == order.Buy {
			maxKey = o.Price.Decimal.Neg().String()
		}
	}
	afterKey, afterSeq := "-Infinity", int64(0)
	var depth int64
	for {
		n := min(bookPage, maxFills-len(book))
		page, err := tx.ListBook(ctx, queries.ListBookParams{
			InstrumentID: o.InstrumentID, Side: string(side), MaxKey: maxKey,
			AfterKey: afterKey, AfterSeq: afterSeq, MaxRows: int32(n),
		})
		if err != nil {
			return nil, false, fmt.Errorf("load book of instrument %d: %w", o.InstrumentID, err)
		}
		book = append(book, page...)
		for _, r := range page {
			depth += r.RemainingQuantity
		}
		switch {
		case len(page) < n || depth >= o.RemainingQuantity:
			return book, false, nil
		case len(book) >= maxFills:
			return book, true, nil
		}
		last := page[len(page)-1]
		afterKey, afterSeq = last.PriorityKey, *last.BookSeq
	}
}
