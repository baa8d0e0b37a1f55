package orderbook_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// matchRetrying runs order id's matching to its end as its run would: a stale version
// (a resting order changed under the step) is retried.
func (b *book) matchRetrying(id int64) (queries.Order, error) {
	for {
		res, err := b.svc.Match(b.ctx, id)
		switch {
		case errors.Is(err, orderbook.ErrStale):
			continue
		case err != nil:
			return queries.Order{}, err
		case !res.More:
			return res.Order, nil
		}
	}
}

func TestACancelRacingAFillEitherWinsOrComesAfterTheCommittedFill(t *testing.T) {
	b := newBook(t)
	for round := range 20 {
		rest := b.run(1, 101, order.Sell, "100", 2)
		buy := b.place(2, 101, order.Buy, "", 1)
		b.dispatch(buy.ID)
		var wg sync.WaitGroup
		var cancelErr, matchErr error
		wg.Go(func() { _, cancelErr = b.svc.RecordCancel(b.ctx, rest.ID, "", nil) })
		wg.Go(func() { _, matchErr = b.matchRetrying(buy.ID) })
		wg.Wait()
		if cancelErr != nil || matchErr != nil {
			t.Fatalf("round %d: cancel %v, match %v", round, cancelErr, matchErr)
		}
		if _, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: rest.ID}); err != nil {
			t.Fatal(err)
		}
		// Whichever committed first, no fill comes after the request in the timeline.
		requested := false
		for _, e := range b.events(rest.ID) {
			switch order.EventType(e.EventType) {
			case order.EventCancelRequested:
				requested = true
			case order.EventPartiallyFilled, order.EventExecuted:
				if requested {
					t.Fatalf("round %d: order %d filled after its cancel was recorded", round, rest.ID)
				}
			}
		}
		got := b.order(rest.ID)
		switch fills := len(b.trades(rest.ID)); {
		case fills == 1:
			wantStatus(t, got, order.PartiallyCancelled, order.ReasonCancelledByClient)
		case fills == 0:
			wantStatus(t, got, order.Cancelled, order.ReasonCancelledByClient)
			wantStatus(t, b.order(buy.ID), order.Failed, order.ReasonNoLiquidity)
		default:
			t.Fatalf("round %d: %d fills", round, fills)
		}
	}
	b.audited()
}

func TestTwoAggressorsOnOneInstrumentNeverTakeTheSameLiquidity(t *testing.T) {
	b := newBook(t)
	for range 5 {
		b.run(1, 101, order.Sell, "100", 1)
	}
	buys := []queries.Order{b.place(2, 101, order.Buy, "", 3), b.place(3, 101, order.Buy, "", 3)}
	var wg sync.WaitGroup
	errs := make([]error, len(buys))
	for i, o := range buys {
		b.dispatch(o.ID)
		wg.Go(func() { _, errs[i] = b.matchRetrying(o.ID) })
	}
	wg.Wait()
	var filled int64
	for i, o := range buys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		got := b.order(o.ID)
		filled += got.Quantity - got.RemainingQuantity
	}
	if filled != 5 {
		t.Errorf("the two buys filled %d in all, want the 5 on the book", filled)
	}
	b.audited()
}

func TestAHaltWaitsForTheMatchInProgressAndStopsTheNextStep(t *testing.T) {
	b := newBook(t)
	n := orderbook.DefaultMaxFillsPerStep + 200
	b.restMany(102, "50", n)
	buy := b.place(1, 102, order.Buy, "", int64(n))
	b.dispatch(buy.ID)
	res, err := b.svc.Match(b.ctx, buy.ID)
	if err != nil || !res.More {
		t.Fatalf("first step: more %v, %v; want the sweep to continue", res.More, err)
	}

	// A match in progress holds the instrument's lock: the halt waits for it.
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, `SELECT 1 FROM instruments WHERE id = 102 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	halted := make(chan error, 1)
	go func() {
		_, err := b.svc.HaltInstrument(b.ctx, 102)
		halted <- err
	}()
	b.waitForLockWaiter()
	select {
	case err := <-halted:
		t.Fatalf("the halt returned while a match held the lock: %v", err)
	default:
	}
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-halted; err != nil {
		t.Fatal(err)
	}

	res, err = b.svc.Match(b.ctx, buy.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res.Order, order.PartiallyCancelled, order.ReasonInstrumentHalted)
	if tr := b.trades(buy.ID); len(tr) != orderbook.DefaultMaxFillsPerStep {
		t.Errorf("%d trades, want only the %d of the step before the halt", len(tr), orderbook.DefaultMaxFillsPerStep)
	}
	b.audited()
}

// waitForLockWaiter waits until some session of the test's database waits for a lock.
func (b *book) waitForLockWaiter() {
	b.t.Helper()
	deadline := b.deadline()
	for {
		var waiting bool
		if err := b.pool.QueryRow(b.ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			               WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
			b.t.Fatal(err)
		}
		if waiting {
			return
		}
		deadline.check("a session waiting for the lock")
	}
}

func TestAHaltedInstrumentMatchesNothingAndKeepsItsBookUntilResumed(t *testing.T) {
	b := newBook(t)
	resting := b.run(1, 101, order.Sell, "100", 2)
	late := b.place(2, 101, order.Buy, "100", 1)
	b.dispatch(late.ID) // validated before the halt, reaches matching after it
	doomed := b.run(3, 101, order.Sell, "99", 1)
	wantStatus(t, doomed, order.Executing, "")

	inst, err := b.svc.HaltInstrument(b.ctx, 101)
	if err != nil || inst.Status != orderbook.InstrumentHalted {
		t.Fatalf("halt: %+v, %v", inst, err)
	}
	res, _ := b.match(late.ID)
	wantStatus(t, res.Order, order.Cancelled, order.ReasonInstrumentHalted)
	// New orders are rejected; the resting ones stay, and their owners may cancel them.
	newcomer := b.place(4, 101, order.Buy, "100", 1)
	got, err := b.svc.Validate(b.ctx, newcomer.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, order.Rejected, order.ReasonInstrumentHalted)
	if o := b.order(resting.ID); !o.OnBook {
		t.Error("the halt took a resting order off the book")
	}
	if _, err := b.svc.RecordCancel(b.ctx, doomed.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: doomed.ID}); err != nil || order.Status(got.Status) != order.Cancelled {
		t.Fatalf("cancel on a halted instrument: %s, %v", got.Status, err)
	}

	if inst, err = b.svc.ResumeInstrument(b.ctx, 101); err != nil || inst.Status != orderbook.InstrumentActive {
		t.Fatalf("resume: %+v, %v", inst, err)
	}
	buy := b.run(5, 101, order.Buy, "100", 2)
	wantStatus(t, buy, order.Executed, "")
	if tr := b.trades(buy.ID); len(tr) != 1 || tr[0].SellOrderID != resting.ID {
		t.Errorf("after the resume the buy traded %+v, want the order that rested through the halt", tr)
	}
	if _, err := b.svc.HaltInstrument(b.ctx, 4242); !errors.Is(err, orderbook.ErrInstrumentNotFound) {
		t.Errorf("halt of an unknown instrument: %v, want ErrInstrumentNotFound", err)
	}
	b.audited()
}
