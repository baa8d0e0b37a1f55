package activities_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

func (n *notifier) NotifyFill(_ context.Context, id int64, _ string, st order.Status) error {
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

func (n *notifier) told() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

func (n *notifier) fail(id int64, fail bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failFor[id] = fail
}

func TestExecuteTellsAHandfulOfCounterpartiesAtOnceAndTheSenderTellsTheRest(t *testing.T) {
	pool := newPool(t)
	book := orderbook.New(pool, nil, orderbook.Config{NoticeLease: 200 * time.Millisecond})
	n := &notifier{got: map[int64]order.Status{}, failFor: map[int64]bool{}}
	acts := activities.New(book, nil, n)
	sells := restingSells(t, book, acts, 40)
	n.fail(sells[3], true)

	buy := place(t, book, 1, order.Buy, "", 40)
	toMatching(t, acts, buy)
	res, err := acts.Execute(context.Background(), buy)
	if err != nil || res.Status != order.Executed {
		t.Fatalf("Execute: %+v, %v; want EXECUTED though a signal failed", res, err)
	}
	// At once: the first 32 of the 40, one of which failed.
	if got := n.told(); got != 31 {
		t.Errorf("Execute told %d runs itself, want 31 (32 handed back, one failing)", got)
	}
	if p := n.peak.Load(); p > 8 {
		t.Errorf("%d signals in flight at once, want at most 8", p)
	}
	// The sender tells the other 8, and the failed one once its claim has run out and
	// the signal goes through.
	n.fail(sells[3], false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- book.DeliverFillNotices(ctx, n) }()
	// A notice is deleted after its signal went through, so the sender is done once
	// every run was told and no notice is left.
	deadline := time.Now().Add(10 * time.Second)
	left := -1
	for n.told() < 40 || left != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 40 runs told and %d notices left after 10s, want 40 and none", n.told(), left)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM fill_notices`).Scan(&left); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
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
