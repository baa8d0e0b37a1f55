package bench

import (
	"testing"

	"github.com/orderflow/orderflow/order"
)

// The seed's pattern is what the auditor will check, so it is checked here first, shape
// by shape, against the transition table.
func TestEverySeedShapeIsAPathThroughTheTransitionTable(t *testing.T) {
	shapes, events := patternRows()
	byPos := map[int][]seedEventRow{}
	for _, e := range events {
		byPos[e.Pos] = append(byPos[e.Pos], e)
	}
	for pos, s := range seedPattern {
		evs := byPos[pos]
		if len(evs) == 0 || evs[0].EventType != string(order.EventOrderPlaced) || evs[0].From != nil || evs[0].To != string(order.Created) {
			t.Errorf("position %d: the timeline must open with ORDER_PLACED → CREATED: %+v", pos, evs)
			continue
		}
		fills := 0
		for i, e := range evs[1:] {
			prev := evs[i]
			if e.From == nil || *e.From != prev.To {
				t.Errorf("position %d, seq %d: starts from %v, the event before left %s", pos, e.Seq, e.From, prev.To)
				continue
			}
			if !order.EventType(e.EventType).ChangesStatus() {
				if e.To != *e.From {
					t.Errorf("position %d, seq %d: the annotation %s moves %s → %s", pos, e.Seq, e.EventType, *e.From, e.To)
				}
			} else if !order.CanTransition(order.Status(*e.From), order.Status(e.To)) || e.EventType != string(order.EventFor(order.Status(e.To))) {
				t.Errorf("position %d, seq %d: %s (%s → %s) is not a move of the transition table", pos, e.Seq, e.EventType, *e.From, e.To)
			}
			if e.AtMs < prev.AtMs {
				t.Errorf("position %d, seq %d: at %d ms, before the event before it (%d ms)", pos, e.Seq, e.AtMs, prev.AtMs)
			}
			if e.Fill {
				fills++
			}
		}
		last := evs[len(evs)-1]
		if last.To != string(s.Status) || !s.Status.Terminal() {
			t.Errorf("position %d: ends %s, the shape says %s, which must be terminal", pos, last.To, s.Status)
		}
		if shapes[pos].UpdatedMs >= seedTail.Milliseconds() {
			t.Errorf("position %d: its last event comes %d ms after it was placed, beyond seedTail", pos, shapes[pos].UpdatedMs)
		}
		wantFills := 1
		if s.Role == single {
			wantFills = 0
		}
		if fills != wantFills || shapes[pos].FilledLots != int64(wantFills) || shapes[pos].FilledLots > s.Lots {
			t.Errorf("position %d (%s): %d fill events, %d of %d lots filled; want %d", pos, s.Role, fills, shapes[pos].FilledLots, s.Lots, wantFills)
		}
		if (s.Kind == order.Market) != (s.PriceOffset == "") {
			t.Errorf("position %d: a %s order with price offset %q", pos, s.Kind, s.PriceOffset)
		}
	}
}

// A maker is taken by the order after it: pairs sit at even positions, a SELL that rests
// and a BUY that takes it, so each trade's resting order is the sell.
func TestSeedPairsAreAMakerAndTheTakerAfterIt(t *testing.T) {
	for pos, s := range seedPattern {
		switch s.Role {
		case maker:
			next := seedPattern[(pos+1)%seedBlock]
			if pos%2 != 0 || next.Role != taker || s.Side != order.Sell || next.Side != order.Buy || s.Kind != order.Limit {
				t.Errorf("position %d: a %s %s maker followed by a %s %s", pos, s.Kind, s.Side, next.Side, next.Role)
			}
		case taker:
			if pos%2 != 1 || seedPattern[pos-1].Role != maker {
				t.Errorf("position %d: a taker not after a maker", pos)
			}
		}
	}
}
