package eventstream_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// BenchmarkEventCommits measures transactions that each write one order event, from 16
// connections at once, with order_events' NOTIFY trigger and without it: a transaction
// that notifies holds PostgreSQL's notification-queue lock from its commit's start to its
// end, WAL flush included, so notifying commits do not share flushes.
//
//	go test -run '^$' -bench EventCommits -benchtime 3s ./eventstream/
func BenchmarkEventCommits(b *testing.B) {
	for _, tc := range []struct {
		name    string
		trigger bool
	}{{"notify", true}, {"no-notify", false}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			pool, err := cluster.NewDatabase(ctx, "evbn_", 16)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			if !tc.trigger {
				if _, err := pool.Exec(ctx, "DROP TRIGGER order_events_notify ON order_events"); err != nil {
					b.Fatal(err)
				}
			}
			book := orderbook.New(pool, nil, orderbook.Config{})
			const conns = 16
			ids := make([]int64, conns)
			for i := range ids {
				res, err := book.Place(ctx, orderbook.NewOrder{UserID: 1, InstrumentID: 101, Side: order.Buy, Kind: order.Market,
					Quantity: 1, TimeInForce: order.IOC, IdempotencyKey: string(rune('a' + i)), RequestHash: "h"})
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = res.Order.ID
			}
			var next atomic.Int64
			b.SetParallelism(conns / max(1, testingProcs()))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := ids[int(next.Add(1)-1)%conns]
				for pb.Next() {
					if _, err := queries.New(pool).InsertOrderEvent(ctx, queries.InsertOrderEventParams{
						OrderID: id, EventType: "NOTE", ToStatus: "CREATED", Details: []byte(`{}`)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
