package orderbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// changeSet collects what one transaction does to orders — status changes, trades, the
// events recording them, the fill notices owed to resting orders' runs — so that apply
// writes all of it in one statement (ApplyChanges), whatever the number of fills.
type changeSet struct {
	arg     queries.ApplyChangesParams
	changes int
	moves   [][2]order.Status
}

// move is one order's status change. remaining and reason default to the order's own
// (reason: kept when empty); onBook says whether the order rests on the book after it.
type move struct {
	to        order.Status
	remaining *int64
	reason    string
	onBook    bool
	assignSeq bool // draw the order's book sequence (its first step of matching)
}

// event is one entry of an order's timeline in a change set; tradeWith names the
// resting order of the trade the event records (0: none), so the trade's id can be put
// in its details.
type event struct {
	orderID   int64
	typ       order.EventType
	from, to  order.Status
	details   map[string]any
	tradeWith int64
}

// change adds o's move to the set with the event that records it, after checking the
// move against the transition table.
func (cs *changeSet) change(o queries.Order, m move, details map[string]any) error {
	from := order.Status(o.Status)
	if err := order.CheckTransition(from, m.to); err != nil {
		return fmt.Errorf("order %d: %w", o.ID, err)
	}
	remaining := o.RemainingQuantity
	if m.remaining != nil {
		remaining = *m.remaining
	}
	ev := map[string]any{}
	for k, v := range details {
		ev[k] = v
	}
	if m.reason != "" {
		ev["reason"] = m.reason
	}
	if m.remaining != nil {
		ev["remainingQuantity"] = remaining
	}
	cs.setStatus(o, m.to, remaining, m.reason, m.onBook, m.assignSeq)
	return cs.event(event{orderID: o.ID, typ: order.EventFor(m.to), from: from, to: m.to, details: ev})
}

// setStatus adds the final status of o in this set without an event; the caller adds
// the events that lead there (a match writes one per fill).
func (cs *changeSet) setStatus(o queries.Order, to order.Status, remaining int64, reason string, onBook, assignSeq bool) {
	a := &cs.arg
	a.OrderIds = append(a.OrderIds, o.ID)
	a.Versions = append(a.Versions, o.Version)
	a.Statuses = append(a.Statuses, string(to))
	a.Remainings = append(a.Remainings, remaining)
	a.Reasons = append(a.Reasons, reason)
	a.OnBooks = append(a.OnBooks, onBook)
	a.AssignSeqs = append(a.AssignSeqs, assignSeq)
	cs.changes++
}

// event adds one timeline entry; status changes are checked against the table.
func (cs *changeSet) event(e event) error {
	if e.typ.ChangesStatus() {
		if err := order.CheckTransition(e.from, e.to); err != nil {
			return fmt.Errorf("order %d: %w", e.orderID, err)
		}
		cs.moves = append(cs.moves, [2]order.Status{e.from, e.to})
	}
	body, err := json.Marshal(e.details)
	if err != nil {
		return fmt.Errorf("event details: %w", err)
	}
	if e.details == nil {
		body = []byte("{}")
	}
	a := &cs.arg
	a.EventOrderIds = append(a.EventOrderIds, e.orderID)
	a.EventTypes = append(a.EventTypes, string(e.typ))
	a.EventFrom = append(a.EventFrom, string(e.from))
	a.EventTo = append(a.EventTo, string(e.to))
	a.EventDetails = append(a.EventDetails, string(body))
	a.EventTradeWith = append(a.EventTradeWith, e.tradeWith)
	return nil
}

// trade adds one trade of the match on instrument between buy and sell orders.
func (cs *changeSet) trade(buyID, sellID int64, price decimal.Decimal, qty int64) {
	a := &cs.arg
	a.TradeBuyIds = append(a.TradeBuyIds, buyID)
	a.TradeSellIds = append(a.TradeSellIds, sellID)
	a.TradePrices = append(a.TradePrices, price.String())
	a.TradeQuantities = append(a.TradeQuantities, qty)
}

// notice adds a fill notice for resting order id, whose run must learn it is now status.
func (cs *changeSet) notice(id int64, status order.Status) {
	a := &cs.arg
	a.NoticeOrderIds = append(a.NoticeOrderIds, id)
	a.NoticeStatuses = append(a.NoticeStatuses, string(status))
}

// apply writes the set in tx, the one way an order's status changes, and returns the
// changed orders by id. If any order changed since it was read, nothing is written
// (the caller's transaction must be rolled back) and the error wraps ErrStale.
func (tx *txn) apply(ctx context.Context, cs *changeSet) (map[int64]queries.Order, error) {
	if tx.autocommit && (tx.applied > 0 || cs.changes != 1 || len(cs.arg.TradeBuyIds) > 0 || len(cs.arg.NoticeOrderIds) > 0) {
		return nil, fmt.Errorf("orderbook: a second write, or one of %d changes with trades or notices, needs a transaction", cs.changes)
	}
	tx.applied++
	a := cs.arg
	// Empty groups still need typed, non-NULL arrays.
	a.TradeBuyIds, a.TradeSellIds = orEmpty(a.TradeBuyIds), orEmpty(a.TradeSellIds)
	a.TradeQuantities, a.EventTradeWith, a.NoticeOrderIds = orEmpty(a.TradeQuantities), orEmpty(a.EventTradeWith), orEmpty(a.NoticeOrderIds)
	a.TradePrices, a.NoticeStatuses = orEmpty(a.TradePrices), orEmpty(a.NoticeStatuses)
	rows, err := tx.ApplyChanges(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("apply %d changes: %w", cs.changes, err)
	}
	if len(rows) != cs.changes {
		return nil, fmt.Errorf("%d of %d orders changed since they were read: %w", cs.changes-len(rows), cs.changes, ErrStale)
	}
	out := make(map[int64]queries.Order, len(rows))
	for _, r := range rows {
		out[r.ID] = queries.Order(r)
	}
	tx.changes = append(tx.changes, cs.moves...)
	return out, nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// transition changes one order's status with its event, in tx, and returns the order as
// it left it.
func (tx *txn) transition(ctx context.Context, o queries.Order, m move, details map[string]any) (queries.Order, error) {
	var cs changeSet
	if err := cs.change(o, m, details); err != nil {
		return o, err
	}
	rows, err := tx.apply(ctx, &cs)
	if err != nil {
		return o, fmt.Errorf("order %d to %s: %w", o.ID, m.to, err)
	}
	return rows[o.ID], nil
}

// annotate appends an event that does not change the status (from = to = the current
// status). The caller must have updated, and so locked, the order's row in the same
// transaction, which keeps seq free of races.
func (tx *txn) annotate(ctx context.Context, o queries.Order, e order.EventType, details map[string]any) error {
	if tx.autocommit {
		return errors.New("orderbook: an annotation needs the transaction that locked its order")
	}
	body, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("event details: %w", err)
	}
	status := o.Status
	if _, err := tx.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
		OrderID: o.ID, EventType: string(e), FromStatus: &status, ToStatus: status, Details: body,
	}); err != nil {
		return fmt.Errorf("append %s for order %d: %w", e, o.ID, err)
	}
	return nil
}
