package orderbook_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
)

// BenchmarkMatchWithAHandfulOfFills times one step of matching of an ordinary order: a
// LIMIT buy that takes three resting sells on a book of a hundred (the setup of each
// iteration is not timed). BENCHMARKS.md compares it with the Execute activity before the
// order-book service.
func BenchmarkMatchWithAHandfulOfFills(b *testing.B) {
	ctx := context.Background()
	svc := orderbook.New(newPool(b), nil, orderbook.Config{})
	place := func(user int64, side order.Side, price string, qty int64) int64 {
		res, err := svc.Place(ctx, orderbook.NewOrder{UserID: user, InstrumentID: 101, Side: side, Kind: order.Limit,
			Price: decimal.NewNullDecimal(decimal.RequireFromString(price)), Quantity: qty, TimeInForce: order.GTC,
			IdempotencyKey: rand.Text(), RequestHash: "h"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Validate(ctx, res.Order.ID); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Dispatch(ctx, res.Order.ID); err != nil {
			b.Fatal(err)
		}
		return res.Order.ID
	}
	rest := func(user int64, side order.Side, price string, qty int64) {
		if _, err := svc.Match(ctx, place(user, side, price, qty)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 100 {
		rest(int64(1000+i), order.Sell, "200", 1) // depth beyond the prices taken
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		for j := range 3 {
			rest(int64(10+j), order.Sell, "100", 1)
		}
		buy := place(int64(100+i%50), order.Buy, "100", 3)
		b.StartTimer()
		res, err := svc.Match(ctx, buy)
		if err != nil || order.Status(res.Order.Status) != order.Executed {
			b.Fatalf("match: %s, %v", res.Order.Status, err)
		}
	}
}
