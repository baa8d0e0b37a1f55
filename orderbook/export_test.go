package orderbook

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
)

// TestPlacer exposes a placer to the package's tests, which hold its writers on a lock
// to see how the orders queued meanwhile share statements.
type TestPlacer struct{ p *placer }

// NewTestPlacer returns a placer writing through pool, whose statements time out after
// timeout and whose queue holds at most maxQueue orders.
func NewTestPlacer(pool *pgxpool.Pool, timeout time.Duration, maxQueue int) *TestPlacer {
	return &TestPlacer{newPlacer(pool, nil, timeout, nil, maxQueue, 0)}
}

// Place places a limit buy of quantity at 10 on instrument 101 for user under key, for
// a request whose context is ctx.
func (t *TestPlacer) Place(ctx context.Context, user, quantity int64, key string) (id int64, created bool, err error) {
	r := t.p.place(ctx, NewOrder{UserID: user, InstrumentID: 101, Side: order.Buy, Kind: order.Limit,
		Price: decimal.NewNullDecimal(decimal.NewFromInt(10)), Quantity: quantity, TimeInForce: order.GTC,
		IdempotencyKey: key, RequestHash: "h"})
	return r.order.ID, r.created, r.err
}

// Queued returns how many orders wait for a writer.
func (t *TestPlacer) Queued() int {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return len(t.p.queue)
}

// Writers is how many orders the placer writes at once at most, each writer taking
// one when they are queued one at a time.
const Writers = placeWriters
