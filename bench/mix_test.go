package bench

import (
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
)

func TestMixSpreadsOrdersAsDocumented(t *testing.T) {
	m := NewMix([]int64{101, 102, 103}, 1)
	const n = 20000
	var market, buys, crossBuys, restBuys int
	instruments := map[int64]int{}
	lo, hi := decimal.RequireFromString("98"), decimal.RequireFromString("102")
	mid := decimal.RequireFromString("100")
	tick := decimal.RequireFromString("0.01")
	for range n {
		o := m.Next()
		instruments[o.InstrumentID]++
		if o.UserID < 1 || o.UserID > 50 {
			t.Fatalf("user %d outside 1..50", o.UserID)
		}
		if o.Quantity < 1 || o.Quantity > 20 {
			t.Fatalf("quantity %d outside 1..20", o.Quantity)
		}
		if o.Side == "BUY" {
			buys++
		} else if o.Side != "SELL" {
			t.Fatalf("side %q", o.Side)
		}
		switch o.Kind {
		case "MARKET":
			market++
			if o.Price != "" {
				t.Fatalf("MARKET order with price %q", o.Price)
			}
		case "LIMIT":
			p, err := decimal.NewFromString(o.Price)
			if err != nil {
				t.Fatalf("price %q: %v", o.Price, err)
			}
			if p.LessThan(lo) || p.GreaterThan(hi) || !p.Mod(tick).IsZero() {
				t.Fatalf("price %s outside 98..102 or off the 0.01 tick", p)
			}
			if o.Side == "BUY" && p.GreaterThan(mid) {
				crossBuys++
			}
			if o.Side == "BUY" && p.LessThan(mid) {
				restBuys++
			}
		default:
			t.Fatalf("kind %q", o.Kind)
		}
	}
	share := func(k int) float64 { return float64(k) / n }
	if s := share(market); s < 0.18 || s > 0.22 {
		t.Errorf("MARKET share %.3f, want about 0.2", s)
	}
	if s := share(buys); s < 0.48 || s > 0.52 {
		t.Errorf("BUY share %.3f, want about 0.5", s)
	}
	if crossBuys == 0 || restBuys == 0 || share(crossBuys) < 0.15 || share(restBuys) < 0.15 {
		t.Errorf("buys above the mid %d, below it %d: want both plenty", crossBuys, restBuys)
	}
	for _, id := range []int64{101, 102, 103} {
		if s := share(instruments[id]); s < 0.3 || s > 0.37 {
			t.Errorf("instrument %d share %.3f, want about a third", id, s)
		}
	}
}

func TestMixIsRepeatableBySeedAndBodiesAreTheAPIsJSON(t *testing.T) {
	a, b := NewMix([]int64{7}, 42), NewMix([]int64{7}, 42)
	for range 100 {
		if x, y := a.Next(), b.Next(); x != y {
			t.Fatalf("same seed, different orders: %+v, %+v", x, y)
		}
	}
	limit := OrderRequest{UserID: 3, InstrumentID: 7, Side: "SELL", Kind: "LIMIT", Price: "99.05", Quantity: 4}
	var got map[string]any
	if err := json.Unmarshal(limit.Body(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"userId": 3.0, "instrumentId": 7.0, "orderType": "SELL", "orderKind": "LIMIT", "price": "99.05", "quantity": 4.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("body[%s] = %v, want %v (body %s)", k, got[k], v, limit.Body())
		}
	}
	market := OrderRequest{UserID: 1, InstrumentID: 7, Side: "BUY", Kind: "MARKET", Quantity: 1}
	var m map[string]any
	if err := json.Unmarshal(market.Body(), &m); err != nil {
		t.Fatal(err)
	}
	if _, has := m["price"]; has {
		t.Errorf("MARKET body %s carries a price", market.Body())
	}
}
