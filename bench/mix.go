package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// Mix generates the orders of a run: a realistic spread over several instruments, buys
// and sells, MARKET and LIMIT orders whose prices both cross the book and rest on it.
//
//   - each instrument trades around a mid price of 100.00;
//   - half the orders buy, half sell;
//   - MarketShare of them are MARKET orders, the rest LIMIT orders priced uniformly in
//     mid ± 2.00 on the 0.01 tick, so a buy above the mid usually finds sells resting
//     below it and trades, while one below the mid usually rests;
//   - quantities from 1 to 20, users from 1 to 50 (so self-trade prevention happens too).
//
// A Mix is not safe for concurrent use; give each load goroutine its own.
type Mix struct {
	rng         *rand.Rand
	instruments []int64
}

// Mix parameters.
const (
	mixMid         = 10000 // 100.00 in ticks of 0.01
	mixSpreadTicks = 200   // LIMIT prices are mid ± 2.00
	mixMarketShare = 0.2
	mixMaxQuantity = 20
	mixUsers       = 50
)

// NewMix returns a Mix over instruments seeded with seed, so runs can be repeated.
func NewMix(instruments []int64, seed uint64) *Mix {
	return &Mix{rng: rand.New(rand.NewPCG(seed, 0x0bde4f10)), instruments: instruments}
}

// OrderRequest is the body of POST /api/v1/orders, in the API's JSON field names.
type OrderRequest struct {
	UserID       int64  `json:"userId"`
	InstrumentID int64  `json:"instrumentId"`
	Side         string `json:"orderType"`
	Kind         string `json:"orderKind"`
	Price        string `json:"price,omitempty"` // decimal text; empty for MARKET
	Quantity     int64  `json:"quantity"`
}

// Next returns the next order of the mix.
func (m *Mix) Next() OrderRequest {
	o := OrderRequest{
		UserID:       1 + m.rng.Int64N(mixUsers),
		InstrumentID: m.instruments[m.rng.IntN(len(m.instruments))],
		Side:         "BUY",
		Kind:         "LIMIT",
		Quantity:     1 + m.rng.Int64N(mixMaxQuantity),
	}
	if m.rng.IntN(2) == 1 {
		o.Side = "SELL"
	}
	if m.rng.Float64() < mixMarketShare {
		o.Kind = "MARKET"
		return o
	}
	ticks := mixMid - mixSpreadTicks + m.rng.IntN(2*mixSpreadTicks+1)
	o.Price = fmt.Sprintf("%d.%02d", ticks/100, ticks%100)
	return o
}

// Body returns the request's JSON body.
func (o OrderRequest) Body() []byte {
	b, _ := json.Marshal(o) // strings and integers cannot fail to encode
	return b
}

// Chance reports true with probability p.
func (m *Mix) Chance(p float64) bool { return m.rng.Float64() < p }
