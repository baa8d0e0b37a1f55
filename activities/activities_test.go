package activities_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shopspring/decimal"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
)

// notifier records fill signals, how many were in flight at once, and fails for the
// orders in failFor.
type notifier struct {
	mu       sync.Mutex
	got      map[int64]order.Status
	inFlight atomic.Int32
	peak     atomic.Int32
	failFor  map[int64]bool
}

func (n *notifier) NotifyFill(_ context.Context, id int64, st order.Status) error {
	now := n.inFlight.Add(1)
	defer n.inFlight.Add(-1)
	for {
		p := n.peak.Load()
		if now <= p || n.peak.CompareAndSwap(p, now) {
			break
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failFor[id] {
		return errors.New("frontend unavailable")
	}
	n.got[id] = st
	return nil
}

func place(t *testing.T, book *orderbook.Service, user int64, side order.Side, price string, qty int64) int64 {
	t.Helper()
	ctx := context.Background()
	no := orderbook.NewOrder{UserID: user, InstrumentID: 101, Side: side, Kind: order.Market, TimeInForce: order.IOC,
		Quantity: qty, IdempotencyKey: rand.Text(), RequestHash: "h"}
	if price != "" {
		no.Kind, no.TimeInForce, no.Price = order.Limit, order.GTC, decimal.NewNullDecimal(decimal.RequireFromString(price))
	}
	res, err := book.Place(ctx, no)
	if err != nil {
		t.Fatal(err)
	}
	return res.Order.ID
}

func toMatching(t *testing.T, acts *activities.Activities, id int64) {
	t.Helper()
	if _, err := acts.Validate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := acts.SendToExecutor(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func restingSells(t *testing.T, book *orderbook.Service, acts *activities.Activities, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = place(t, book, int64(100+i), order.Sell, "10", 1)
		toMatching(t, acts, ids[i])
		if _, err := acts.Execute(context.Background(), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestExecuteTellsEveryCounterpartyWithBoundedConcurrencyAndResendsWhatFailed(t *testing.T) {
	pool := newPool(t)
	book := orderbook.New(pool, nil, orderbook.Config{})
	n := &notifier{got: map[int64]order.Status{}, failFor: map[int64]bool{}}
	acts := activities.New(book, nil, n)
	sells := restingSells(t, book, acts, 40)
	n.failFor[sells[7]] = true

	buy := place(t, book, 1, order.Buy, "", 40)
	toMatching(t, acts, buy)
	if _, err := acts.Execute(context.Background(), buy); err == nil {
		t.Fatal("Execute succeeded though a fill signal failed")
	}
	if len(n.got) != 39 {
		t.Errorf("%d runs told, want the 39 whose signal went through", len(n.got))
	}
	if p := n.peak.Load(); p > 8 {
		t.Errorf("%d signals in flight at once, want at most 8", p)
	}
	// The retry changes nothing in the database and tells only the one that missed it.
	delete(n.failFor, sells[7])
	n.got = map[int64]order.Status{}
	res, err := acts.Execute(context.Background(), buy)
	if err != nil || res.Status != order.Executed || res.More {
		t.Fatalf("retry: %+v, %v; want EXECUTED", res, err)
	}
	if len(n.got) != 1 || n.got[sells[7]] != order.Executed {
		t.Errorf("the retry told %v, want only order %d of its EXECUTED", n.got, sells[7])
	}
}

func TestServiceErrorsBecomeTemporalsRetryableAndNonRetryableFailures(t *testing.T) {
	pool := newPool(t)
	acts := activities.New(orderbook.New(pool, nil, orderbook.Config{}), nil, nil)
	_, err := acts.Validate(context.Background(), 987654)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != activities.ErrTypeUnknownOrder {
		t.Errorf("an unknown order: %v, want a non-retryable %s", err, activities.ErrTypeUnknownOrder)
	}
	book := orderbook.New(pool, nil, orderbook.Config{})
	id := place(t, book, 1, order.Buy, "10", 1)
	toMatching(t, acts, id)
	if _, err := pool.Exec(context.Background(), `DELETE FROM instruments WHERE id = 101 AND NOT EXISTS (SELECT 1 FROM trades WHERE instrument_id = 101)`); err != nil {
		t.Fatal(err)
	}
	_, err = acts.Execute(context.Background(), id)
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != activities.ErrTypeUnknownInstrument {
		t.Errorf("an order whose instrument is gone: %v, want a non-retryable %s", err, activities.ErrTypeUnknownInstrument)
	}
}
