package orderbook_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// book is one test's order-book service on a database of its own, with helpers that
// drive orders through their lifecycle as their runs would.
type book struct {
	t    *testing.T
	pool *pgxpool.Pool
	svc  *orderbook.Service
	ctx  context.Context
}

func newBook(t *testing.T) *book {
	t.Helper()
	pool := newPool(t)
	return &book{t: t, pool: pool, svc: orderbook.New(pool, nil, orderbook.Config{}), ctx: context.Background()}
}

// place places an order as the API does; price "" is a MARKET order.
func (b *book) place(user, inst int64, side order.Side, price string, qty int64) queries.Order {
	b.t.Helper()
	no := orderbook.NewOrder{UserID: user, InstrumentID: inst, Side: side, Kind: order.Market, Quantity: qty,
		TimeInForce: order.IOC, IdempotencyKey: rand.Text(), RequestHash: "h"}
	if price != "" {
		no.Kind, no.TimeInForce = order.Limit, order.GTC
		no.Price = decimal.NewNullDecimal(decimal.RequireFromString(price))
	}
	res, err := b.svc.Place(b.ctx, no)
	if err != nil || !res.Created {
		b.t.Fatalf("place: %+v, %v", res, err)
	}
	return res.Order
}

// dispatch validates and dispatches order id, as its run's first two steps do.
func (b *book) dispatch(id int64) queries.Order {
	b.t.Helper()
	if _, err := b.svc.Validate(b.ctx, id); err != nil {
		b.t.Fatalf("validate %d: %v", id, err)
	}
	o, err := b.svc.Dispatch(b.ctx, id)
	if err != nil {
		b.t.Fatalf("dispatch %d: %v", id, err)
	}
	return o
}

// match runs order id's steps of matching until its sweep is over, returning the last
// step's result and how many steps there were.
func (b *book) match(id int64) (orderbook.MatchResult, int) {
	b.t.Helper()
	for steps := 1; ; steps++ {
		res, err := b.svc.Match(b.ctx, id)
		if err != nil {
			b.t.Fatalf("match %d: %v", id, err)
		}
		if !res.More {
			return res, steps
		}
	}
}

// run places an order and takes it through matching.
func (b *book) run(user, inst int64, side order.Side, price string, qty int64) queries.Order {
	b.t.Helper()
	o := b.place(user, inst, side, price, qty)
	b.dispatch(o.ID)
	res, _ := b.match(o.ID)
	return res.Order
}

// statuses returns order id's timeline as the statuses its events moved it to.
func (b *book) statuses(id int64) []string {
	b.t.Helper()
	var out []string
	for _, e := range b.events(id) {
		out = append(out, e.ToStatus)
	}
	return out
}

func (b *book) order(id int64) queries.Order {
	b.t.Helper()
	o, err := b.svc.Order(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return o
}

func (b *book) trades(id int64) []queries.Trade {
	b.t.Helper()
	tr, err := b.svc.Trades(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return tr
}

func (b *book) events(id int64) []queries.OrderEvent {
	b.t.Helper()
	ev, err := b.svc.Events(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return ev
}

// audited fails the test if the database breaks any invariant the auditor checks.
func (b *book) audited() {
	b.t.Helper()
	rep, err := audit.Run(b.ctx, b.pool, nil, audit.Options{})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, v := range rep.Violations {
		b.t.Errorf("audit: %s order %d: %s", v.Check, v.OrderID, v.Detail)
	}
}

func (b *book) exec(sql string, args ...any) {
	b.t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
}

func wantStatus(t *testing.T, o queries.Order, st order.Status, reason string) {
	t.Helper()
	if order.Status(o.Status) != st || o.Reason != reason {
		t.Errorf("order %d is %s (reason %q), want %s (reason %q)", o.ID, o.Status, o.Reason, st, reason)
	}
}

func TestValidateChecksTheInstrumentsRulesAndChangesNothingTwice(t *testing.T) {
	b := newBook(t)
	b.exec(`INSERT INTO instruments (id, symbol, tick_size, lot_size, min_quantity, max_quantity, status)
	        VALUES (201, 'LOT5', 0.05, 5, 5, 100, 'ACTIVE'), (202, 'HALT', 0.01, 1, 1, 100, 'HALTED')`)
	cases := []struct {
		name   string
		inst   int64
		price  string
		qty    int64
		status order.Status
		reason string
	}{
		{"an order within the rules is validated and handed to matching", 201, "1.05", 10, order.SentToExecutor, ""},
		{"an unknown instrument is rejected", 999, "1", 1, order.Rejected, order.ReasonUnknownInstrument},
		{"a halted instrument is rejected", 202, "1", 1, order.Rejected, order.ReasonInstrumentHalted},
		{"a price off the tick is rejected", 201, "1.01", 10, order.Rejected, order.ReasonTickSize},
		{"a quantity off the lot is rejected", 201, "1.05", 7, order.Rejected, order.ReasonLotSize},
		{"a quantity out of range is rejected", 201, "1.05", 105, order.Rejected, order.ReasonQuantityOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := b.place(1, c.inst, order.Buy, c.price, c.qty)
			got, err := b.svc.Validate(b.ctx, o.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, got, c.status, c.reason)
			// One write, recording every status it went through.
			want := []string{"CREATED", string(c.status)}
			if c.status == order.SentToExecutor {
				want = []string{"CREATED", "VALIDATED", "SENT_TO_EXECUTOR"}
			}
			if got.Version != 1 || !slices.Equal(b.statuses(o.ID), want) {
				t.Errorf("version %d, timeline %v; want version 1 and %v", got.Version, b.statuses(o.ID), want)
			}
			again, err := b.svc.Validate(b.ctx, o.ID)
			if err != nil || again.Version != got.Version {
				t.Errorf("second Validate: version %d → %d, %v; want no change", got.Version, again.Version, err)
			}
		})
	}
	if _, err := b.svc.Validate(b.ctx, 424242); !errors.Is(err, orderbook.ErrNotFound) {
		t.Errorf("Validate of an unknown order: %v, want ErrNotFound", err)
	}
	b.audited()
}

func TestDispatchMovesOnlyValidatedOrders(t *testing.T) {
	b := newBook(t)
	o := b.place(1, 101, order.Buy, "10", 1)
	if got, err := b.svc.Dispatch(b.ctx, o.ID); err != nil || order.Status(got.Status) != order.Created {
		t.Fatalf("Dispatch of a CREATED order: %s, %v; want it left CREATED", got.Status, err)
	}
	// An order an earlier release's Validate left VALIDATED.
	b.exec(`UPDATE orders SET status = 'VALIDATED', version = version + 1 WHERE id = $1`, o.ID)
	b.exec(`INSERT INTO order_events (order_id, seq, event_type, from_status, to_status) VALUES ($1, 2, 'VALIDATED', 'CREATED', 'VALIDATED')`, o.ID)
	got, err := b.svc.Dispatch(b.ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, order.SentToExecutor, "")
	if again, err := b.svc.Dispatch(b.ctx, o.ID); err != nil || again.Version != got.Version {
		t.Errorf("second Dispatch changed the order (version %d → %d) or failed: %v", got.Version, again.Version, err)
	}
}

func TestAMatchTradesAtTheRestingPriceAndRecordsEveryFill(t *testing.T) {
	b := newBook(t)
	s1 := b.run(1, 101, order.Sell, "100", 3)
	s2 := b.run(2, 101, order.Sell, "101", 3)
	wantStatus(t, s1, order.Executing, "")
	if !s1.OnBook || s1.BookSeq == nil {
		t.Fatalf("resting sell: on book %v, book seq %v; want on the book with a sequence", s1.OnBook, s1.BookSeq)
	}
	buy := b.place(3, 101, order.Buy, "101", 4)
	b.dispatch(buy.ID)
	res, steps := b.match(buy.ID)
	wantStatus(t, res.Order, order.Executed, "")
	if steps != 1 || res.Order.OnBook {
		t.Errorf("steps %d, on book %v; want one step, off the book", steps, res.Order.OnBook)
	}
	tr := b.trades(buy.ID)
	if len(tr) != 2 || tr[0].SellOrderID != s1.ID || !tr[0].Price.Equal(decimal.NewFromInt(100)) || tr[0].Quantity != 3 ||
		tr[1].SellOrderID != s2.ID || !tr[1].Price.Equal(decimal.NewFromInt(101)) || tr[1].Quantity != 1 {
		t.Errorf("trades = %+v, want 3@100 with %d then 1@101 with %d", tr, s1.ID, s2.ID)
	}
	wantStatus(t, b.order(s1.ID), order.Executed, "")
	s2now := b.order(s2.ID)
	wantStatus(t, s2now, order.PartiallyFilled, "")
	if !s2now.OnBook || s2now.RemainingQuantity != 2 {
		t.Errorf("s2: on book %v with %d left, want on the book with 2", s2now.OnBook, s2now.RemainingQuantity)
	}
	// Each fill is an event of both orders, naming its trade.
	var fills int
	for _, e := range b.events(buy.ID) {
		if e.EventType == string(order.EventPartiallyFilled) || e.EventType == string(order.EventExecuted) {
			fills++
			if !containsTradeID(e.Details) {
				t.Errorf("fill event %s has no tradeId: %s", e.EventType, e.Details)
			}
		}
	}
	if fills != 2 {
		t.Errorf("the buy has %d fill events, want 2", fills)
	}
	// s1 executed and s2 moved to PARTIALLY_FILLED: both runs are owed a notice, handed
	// back for delivery at once, and claimed so that no other sender also sends them.
	if len(res.Notices) != 2 {
		t.Fatalf("notices = %+v, want s1 EXECUTED and s2 PARTIALLY_FILLED", res.Notices)
	}
	again, err := b.svc.Match(b.ctx, buy.ID)
	if err != nil || len(again.Notices) != 0 || again.Order.Version != res.Order.Version {
		t.Fatalf("a retry of the step: %+v, %v; want no change and the claimed notices left to their sender", again, err)
	}
	told := newRecorder()
	if err := b.svc.Deliver(b.ctx, told, res.Notices); err != nil {
		t.Fatal(err)
	}
	if told.status(s1.ID) != order.Executed || told.status(s2.ID) != order.PartiallyFilled || b.pendingNotices() != 0 {
		t.Errorf("told %v with %d notices left, want s1 EXECUTED, s2 PARTIALLY_FILLED and none left", told.got, b.pendingNotices())
	}
	// A notice names the resting order's run, whose id carries the order's run key.
	if told.keys[s1.ID] != s1.RunKey || told.keys[s2.ID] != s2.RunKey || s1.RunKey == "" || s1.RunKey == s2.RunKey {
		t.Errorf("notices named run keys %v, want s1's %q and s2's %q", told.keys, s1.RunKey, s2.RunKey)
	}
	b.audited()
}

// A run acts only on its own order: one whose run key is not the order's (a run left
// from before a restore, whose order id came back with another key) or whose order id is
// another order's changes nothing and is told ErrForeignRun.
func TestARunActsOnlyOnTheOrderItWasStartedFor(t *testing.T) {
	b := newBook(t)
	o := b.place(1, 101, order.Buy, "100", 1)
	if len(o.RunKey) != 12 {
		t.Fatalf("run key %q, want 12 hex digits", o.RunKey)
	}
	for _, acting := range []struct {
		id  int64
		key string
	}{{o.ID, "0123456789ab"}, {o.ID, ""}, {o.ID + 1, o.RunKey}} {
		ctx := orderbook.ActingFor(b.ctx, acting.id, acting.key)
		if _, err := b.svc.Validate(ctx, o.ID); !errors.Is(err, orderbook.ErrForeignRun) {
			t.Errorf("validate as run %d/%q: %v, want ErrForeignRun", acting.id, acting.key, err)
		}
		if _, err := b.svc.Cancel(ctx, orderbook.CancelRequest{OrderID: o.ID, Reason: order.ReasonRunCancelled}); !errors.Is(err, orderbook.ErrForeignRun) {
			t.Errorf("cancel as run %d/%q: %v, want ErrForeignRun", acting.id, acting.key, err)
		}
	}
	if now := b.order(o.ID); now.Version != o.Version || order.Status(now.Status) != order.Created {
		t.Fatalf("the order changed: %+v", now)
	}
	got, err := b.svc.Validate(orderbook.ActingFor(b.ctx, o.ID, o.RunKey), o.ID)
	if err != nil || order.Status(got.Status) != order.SentToExecutor {
		t.Errorf("validate as the order's own run: %+v, %v", got, err)
	}
}

// recorder is a FillNotifier that remembers the last status each run was told.
type recorder struct {
	mu   sync.Mutex
	got  map[int64]order.Status
	keys map[int64]string // the run key each notice named
}

func newRecorder() *recorder {
	return &recorder{got: map[int64]order.Status{}, keys: map[int64]string{}}
}

func (r *recorder) NotifyFill(_ context.Context, id int64, key string, st order.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[id] = st
	r.keys[id] = key
	return nil
}

func (r *recorder) status(id int64) order.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (b *book) pendingNotices() int {
	b.t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM fill_notices`).Scan(&n); err != nil {
		b.t.Fatal(err)
	}
	return n
}

func containsTradeID(details []byte) bool { return bytes.Contains(details, []byte(`"tradeId"`)) }

func TestTimePriorityIsArrivalAtTheBookNotTheOrderID(t *testing.T) {
	b := newBook(t)
	early := b.place(1, 101, order.Sell, "100", 1) // the lower id...
	late := b.place(2, 101, order.Sell, "100", 1)
	b.dispatch(early.ID)
	b.dispatch(late.ID)
	b.match(late.ID) // ...reaches the book second
	b.match(early.ID)
	if e, l := b.order(early.ID), b.order(late.ID); *l.BookSeq >= *e.BookSeq {
		t.Fatalf("book seqs: late-id order %d, early-id order %d; want the first to arrive first", *l.BookSeq, *e.BookSeq)
	}
	buy := b.run(3, 101, order.Buy, "100", 1)
	wantStatus(t, buy, order.Executed, "")
	if tr := b.trades(buy.ID); len(tr) != 1 || tr[0].SellOrderID != late.ID {
		t.Errorf("the buy traded with %+v, want order %d, which reached the book first", tr, late.ID)
	}
	wantStatus(t, b.order(early.ID), order.Executing, "")
	b.audited()
}

// restMany puts n resting 1-lot sells at price on the instrument, each of its own user,
// straight onto the book with the timeline a run would have written, in arrival order.
func (b *book) restMany(inst int64, price string, n int) {
	b.t.Helper()
	b.exec(`
		WITH o AS (
			INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
			                    status, time_in_force, idempotency_key, request_hash, book_seq, on_book)
			SELECT 10000 + g, $1, 'SELL', 'LIMIT', $2::numeric, 1, 1, 'EXECUTING', 'GTC', 'rest-' || g, 'h',
			       nextval('order_book_seq'), true
			FROM generate_series(1, $3::int) g ORDER BY g
			RETURNING id)
		INSERT INTO order_events (order_id, seq, event_type, from_status, to_status)
		SELECT o.id, e.seq, e.typ, e.from_status, e.to_status FROM o CROSS JOIN (VALUES
			(1, 'ORDER_PLACED', NULL, 'CREATED'), (2, 'VALIDATED', 'CREATED', 'VALIDATED'),
			(3, 'SENT_TO_EXECUTOR', 'VALIDATED', 'SENT_TO_EXECUTOR'),
			(4, 'EXECUTING', 'SENT_TO_EXECUTOR', 'EXECUTING')) AS e(seq, typ, from_status, to_status)`,
		inst, price, n)
}

func TestADeepSweepRunsInBoundedStepsAndFillsEveryRestingOrderOnce(t *testing.T) {
	b := newBook(t)
	n := orderbook.DefaultMaxFillsPerStep*2 + 500
	b.restMany(101, "100", n)
	buy := b.place(1, 101, order.Buy, "", int64(n))
	b.dispatch(buy.ID)

	var steps int
	var inline []orderbook.FillNotice
	for {
		res, err := b.svc.Match(b.ctx, buy.ID)
		if err != nil {
			t.Fatal(err)
		}
		steps++
		inline = append(inline, res.Notices...)
		var trades int
		if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM trades WHERE buy_order_id = $1`, buy.ID).Scan(&trades); err != nil {
			t.Fatal(err)
		}
		if want := min(steps*orderbook.DefaultMaxFillsPerStep, n); trades != want {
			t.Fatalf("after step %d: %d trades, want %d", steps, trades, want)
		}
		if !res.More {
			wantStatus(t, res.Order, order.Executed, "")
			break
		}
		if res.Order.OnBook || order.Status(res.Order.Status) != order.PartiallyFilled || len(res.Notices) != 0 {
			t.Fatalf("mid-sweep the buy is %s, on book %v, with %d notices to deliver; want PARTIALLY_FILLED off the book, none",
				res.Order.Status, res.Order.OnBook, len(res.Notices))
		}
	}
	if steps != 3 || len(inline) == 0 || len(inline) > 32 || b.pendingNotices() != n {
		t.Errorf("%d steps, %d notices handed back, %d kept; want 3 steps, 1 to 32 handed back, all %d kept until delivered",
			steps, len(inline), b.pendingNotices(), n)
	}
	// The sender delivers the others; the ones handed back are their step's to send.
	told := newRecorder()
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- b.svc.DeliverFillNotices(ctx, told) }()
	deadline := b.deadline()
	for told.count() < n-len(inline) {
		deadline.check("the sender told every resting order's run")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, fn := range inline {
		if told.status(fn.OrderID) != "" {
			t.Errorf("order %d, handed back to its step, was sent by the sender too while still claimed", fn.OrderID)
		}
	}
	var left int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM orders WHERE on_book`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d orders still on the book (%v), want none", left, err)
	}
	b.audited()
}

func TestACancelRecordedTakesTheOrderOffTheBookAtOnce(t *testing.T) {
	b := newBook(t)
	s := b.run(1, 101, order.Sell, "100", 1)
	if _, err := b.svc.RecordCancel(b.ctx, s.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	// Its run has not applied the cancel yet, but nothing may trade with it any more.
	if o := b.order(s.ID); o.OnBook || !o.CancelRequested {
		t.Fatalf("after the request: on book %v, cancel requested %v", o.OnBook, o.CancelRequested)
	}
	buy := b.run(2, 101, order.Buy, "", 1)
	wantStatus(t, buy, order.Failed, order.ReasonNoLiquidity)
	if tr := b.trades(s.ID); len(tr) != 0 {
		t.Errorf("the cancelled order traded: %+v", tr)
	}
	// Repeated, the request is recorded once; the run then applies it.
	if _, err := b.svc.RecordCancel(b.ctx, s.ID, "user:1", nil); err != nil {
		t.Fatal(err)
	}
	got, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: s.ID, RequestedBy: "client"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, order.Cancelled, order.ReasonCancelledByClient)
	var requests int
	for _, e := range b.events(s.ID) {
		if e.EventType == string(order.EventCancelRequested) {
			requests++
		}
	}
	if requests != 1 {
		t.Errorf("%d CANCEL_REQUESTED events, want 1", requests)
	}
	var st *orderbook.StatusError
	if _, err := b.svc.RecordCancel(b.ctx, s.ID, "", nil); !errors.As(err, &st) || !errors.Is(err, orderbook.ErrTerminal) || st.Status != order.Cancelled {
		t.Errorf("cancel of a cancelled order: %v, want ErrTerminal naming CANCELLED", err)
	}
	if _, err := b.svc.RecordCancel(b.ctx, 999999, "", nil); !errors.Is(err, orderbook.ErrNotFound) {
		t.Errorf("cancel of an unknown order: %v, want ErrNotFound", err)
	}
	b.audited()
}

func TestAnAggressorWhoseCancelWasRecordedNeverTrades(t *testing.T) {
	b := newBook(t)
	b.run(1, 101, order.Sell, "100", 5)
	buy := b.place(2, 101, order.Buy, "", 5)
	b.dispatch(buy.ID)
	if _, err := b.svc.RecordCancel(b.ctx, buy.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	res, _ := b.match(buy.ID)
	wantStatus(t, res.Order, order.Cancelled, order.ReasonCancelledByClient)
	if tr := b.trades(buy.ID); len(tr) != 0 {
		t.Errorf("trades = %+v, want none", tr)
	}
	b.audited()
}

func TestAnOperatorRetryOfAParkedMatchAppliesTheCancelRecordedMeanwhile(t *testing.T) {
	b := newBook(t)
	b.run(1, 101, order.Sell, "100", 5)
	buy := b.place(2, 101, order.Buy, "100", 5)
	b.dispatch(buy.ID)
	if _, err := b.svc.Park(b.ctx, orderbook.ParkRequest{OrderID: buy.ID, Step: "Execute", Error: "connection reset", Attempts: 12}); err != nil {
		t.Fatal(err)
	}
	// Hours later its owner cancels it, and then an operator retries the parked step.
	if _, err := b.svc.RecordCancel(b.ctx, buy.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Resume(b.ctx, orderbook.ResumeRequest{OrderID: buy.ID, Step: "Execute", RequestedBy: "operator"}); err != nil {
		t.Fatal(err)
	}
	res, _ := b.match(buy.ID)
	wantStatus(t, res.Order, order.Cancelled, order.ReasonCancelledByClient)
	if tr := b.trades(buy.ID); len(tr) != 0 {
		t.Errorf("the cancelled order traded after the retry: %+v", tr)
	}
	var types []string
	for _, e := range b.events(buy.ID) {
		types = append(types, e.EventType)
	}
	want := []string{"ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTION_STALLED", "CANCEL_REQUESTED", "OPERATOR_RETRY", "CANCELLED"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("timeline %v, want %v", types, want)
	}
	b.audited()
}

func TestParkAndResumeAreRecordedOnce(t *testing.T) {
	b := newBook(t)
	o := b.dispatch(b.place(1, 101, order.Buy, "10", 1).ID)
	for range 2 {
		p, err := b.svc.Park(b.ctx, orderbook.ParkRequest{OrderID: o.ID, Step: "Execute", Error: "down", Attempts: 3})
		if err != nil || !p.NeedsAttention || p.LastError != "down" || p.StalledStep != "Execute" {
			t.Fatalf("Park: %+v, %v", p, err)
		}
	}
	for range 2 {
		r, err := b.svc.Resume(b.ctx, orderbook.ResumeRequest{OrderID: o.ID, Step: "Execute", RequestedBy: "operator"})
		if err != nil || r.NeedsAttention {
			t.Fatalf("Resume: %+v, %v", r, err)
		}
	}
	var stalled, retried int
	for _, e := range b.events(o.ID) {
		switch order.EventType(e.EventType) {
		case order.EventExecutionStalled:
			stalled++
		case order.EventOperatorRetry:
			retried++
		}
	}
	if stalled != 1 || retried != 1 {
		t.Errorf("%d EXECUTION_STALLED and %d OPERATOR_RETRY events, want 1 each", stalled, retried)
	}
	wantStatus(t, b.order(o.ID), order.SentToExecutor, "")
}

// A cancel ends a parked order (its run was cancelled while parked) and unparks it, and a
// park recorded after the order ended changes nothing.
func TestACancelUnparksAndALateParkLeavesAnEndedOrderAlone(t *testing.T) {
	b := newBook(t)
	o := b.dispatch(b.place(1, 101, order.Buy, "10", 1).ID)
	if _, err := b.svc.Park(b.ctx, orderbook.ParkRequest{OrderID: o.ID, Step: "Execute", Error: "down", Attempts: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := b.svc.Cancel(b.ctx, orderbook.CancelRequest{OrderID: o.ID, Reason: order.ReasonRunCancelled, RequestedBy: "temporal"})
	if err != nil || c.NeedsAttention {
		t.Fatalf("Cancel of a parked order: %+v, %v; want it cancelled and unparked", c, err)
	}
	wantStatus(t, c, order.Cancelled, order.ReasonRunCancelled)
	late, err := b.svc.Park(b.ctx, orderbook.ParkRequest{OrderID: o.ID, Step: "Validate", Error: "late", Attempts: 3})
	if err != nil || late.NeedsAttention || late.Version != c.Version {
		t.Errorf("a park after the order ended: %+v, %v; want nothing changed", late, err)
	}
	b.audited()
}

func TestFailEndsAnOrderTakesItOffTheBookAndUnparksIt(t *testing.T) {
	b := newBook(t)
	s := b.run(1, 101, order.Sell, "100", 2)
	if _, err := b.svc.Park(b.ctx, orderbook.ParkRequest{OrderID: s.ID, Step: "Execute", Error: "x"}); err != nil {
		t.Fatal(err)
	}
	got, err := b.svc.Fail(b.ctx, orderbook.FailRequest{OrderID: s.ID, Reason: "venue closed", RequestedBy: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, order.Failed, "venue closed")
	if got.OnBook || got.NeedsAttention {
		t.Errorf("failed order: on book %v, parked %v; want neither", got.OnBook, got.NeedsAttention)
	}
	if again, err := b.svc.Fail(b.ctx, orderbook.FailRequest{OrderID: s.ID, Reason: "again"}); err != nil || again.Reason != "venue closed" {
		t.Errorf("second Fail: %+v, %v; want it left as it was", again, err)
	}
	buy := b.run(2, 101, order.Buy, "", 1)
	wantStatus(t, buy, order.Failed, order.ReasonNoLiquidity)
	b.audited()
}

// deadline bounds a test's wait for a condition it polls.
type deadline struct {
	t  *testing.T
	at time.Time
}

func (b *book) deadline() deadline { return deadline{t: b.t, at: time.Now().Add(10 * time.Second)} }

// check fails the test once the deadline has passed, and otherwise pauses before the
// next poll.
func (d deadline) check(what string) {
	d.t.Helper()
	if time.Now().After(d.at) {
		d.t.Fatalf("%s: not within 10s", what)
	}
	time.Sleep(5 * time.Millisecond) // poll interval
}

// placeFOK places a fill-or-kill LIMIT order and dispatches it.
func (b *book) placeFOK(user, inst int64, side order.Side, price string, qty int64) queries.Order {
	b.t.Helper()
	res, err := b.svc.Place(b.ctx, orderbook.NewOrder{UserID: user, InstrumentID: inst, Side: side, Kind: order.Limit,
		Price: decimal.NewNullDecimal(decimal.RequireFromString(price)), Quantity: qty, TimeInForce: order.FOK,
		IdempotencyKey: rand.Text(), RequestHash: "h"})
	if err != nil || !res.Created {
		b.t.Fatalf("place FOK: %+v, %v", res, err)
	}
	b.dispatch(res.Order.ID)
	return res.Order
}

func TestAFillOrKillOrderFillsEntirelyOrNotAtAll(t *testing.T) {
	b := newBook(t)
	s1 := b.run(1, 102, order.Sell, "100", 2)
	s2 := b.run(2, 102, order.Sell, "101", 3)
	b.run(2, 102, order.Sell, "103", 10) // beyond the FOK's price

	// One lot short at its price: no trade at all, and the book is as it was.
	short := b.placeFOK(3, 102, order.Buy, "101", 6)
	res, _ := b.match(short.ID)
	wantStatus(t, res.Order, order.Cancelled, order.ReasonFOKNotFilled)
	if tr := b.trades(short.ID); len(tr) != 0 || res.Order.OnBook || res.Order.RemainingQuantity != 6 {
		t.Fatalf("a FOK one lot short: %d trades, on book %v, %d left; want none, off the book, all 6", len(tr), res.Order.OnBook, res.Order.RemainingQuantity)
	}
	if o := b.order(s1.ID); o.RemainingQuantity != 2 || !o.OnBook {
		t.Errorf("the killed FOK changed the book: %+v", o)
	}

	// Exactly deep enough: filled at once, at the resting prices.
	exact := b.placeFOK(3, 102, order.Buy, "101", 5)
	res, steps := b.match(exact.ID)
	wantStatus(t, res.Order, order.Executed, "")
	if tr := b.trades(exact.ID); steps != 1 || len(tr) != 2 || tr[0].SellOrderID != s1.ID || tr[1].SellOrderID != s2.ID {
		t.Errorf("a FOK exactly deep enough: %d steps, trades %+v; want one step taking %d then %d", steps, tr, s1.ID, s2.ID)
	}
	// Its timeline records each fill, but all of them, to EXECUTED, in the one
	// transaction of its first match: no one ever saw it partly filled.
	var fills, txns int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*), count(DISTINCT created_at) FROM order_events
		WHERE order_id = $1 AND to_status IN ('PARTIALLY_FILLED', 'EXECUTED')`, exact.ID).Scan(&fills, &txns); err != nil || fills != 2 || txns != 1 {
		t.Errorf("FOK fill events: %d in %d transactions (%v); want 2 in one", fills, txns, err)
	}
	b.audited()
}

func TestAMarketOrderThatReachesTheBookTooLateExpiresStale(t *testing.T) {
	pool := newPool(t)
	b := &book{t: t, pool: pool, ctx: context.Background(),
		svc: orderbook.New(pool, nil, orderbook.Config{MarketMaxAge: 5 * time.Second})}
	sell := b.run(1, 103, order.Sell, "100", 10)

	stale := b.place(2, 103, order.Buy, "", 3)
	b.dispatch(stale.ID)
	b.exec(`UPDATE orders SET created_at = now() - interval '6 seconds' WHERE id = $1`, stale.ID)
	res, _ := b.match(stale.ID)
	wantStatus(t, res.Order, order.Expired, order.ReasonStale)
	if tr := b.trades(stale.ID); len(tr) != 0 || b.order(sell.ID).RemainingQuantity != 10 {
		t.Errorf("a stale MARKET order traded: %+v", tr)
	}
	if got := b.statuses(stale.ID); got[len(got)-1] != string(order.Expired) {
		t.Errorf("timeline %v, want it to end EXPIRED", got)
	}

	// In time, and a LIMIT order however old: both trade.
	fresh := b.place(2, 103, order.Buy, "", 3)
	b.dispatch(fresh.ID)
	res, _ = b.match(fresh.ID)
	wantStatus(t, res.Order, order.Executed, "")
	old := b.place(2, 103, order.Buy, "100", 1)
	b.dispatch(old.ID)
	b.exec(`UPDATE orders SET created_at = now() - interval '1 hour' WHERE id = $1`, old.ID)
	res, _ = b.match(old.ID)
	wantStatus(t, res.Order, order.Executed, "")
	b.audited()
}

// placeExpiring places a GTD LIMIT order expiring at expireAt and dispatches it.
func (b *book) placeExpiring(user, inst int64, side order.Side, price string, qty int64, expireAt time.Time) queries.Order {
	b.t.Helper()
	res, err := b.svc.Place(b.ctx, orderbook.NewOrder{UserID: user, InstrumentID: inst, Side: side, Kind: order.Limit,
		Price: decimal.NewNullDecimal(decimal.RequireFromString(price)), Quantity: qty, TimeInForce: order.GTD,
		ExpireAt: &expireAt, IdempotencyKey: rand.Text(), RequestHash: "h"})
	if err != nil || !res.Created {
		b.t.Fatalf("place GTD: %+v, %v", res, err)
	}
	b.dispatch(res.Order.ID)
	return res.Order
}

func TestAnExpiringOrderRestsUntilItsExpiryAndThenExpires(t *testing.T) {
	b := newBook(t)
	gtd := b.placeExpiring(1, 101, order.Buy, "99", 5, time.Now().Add(time.Hour))
	res, _ := b.match(gtd.ID)
	wantStatus(t, res.Order, order.Executing, "")
	if !res.Order.OnBook || res.Order.ExpireAt == nil {
		t.Fatalf("a GTD order does not rest with its expiry: %+v", res.Order)
	}
	b.audited()                        // a resting GTD order is no violation
	b.run(2, 101, order.Sell, "99", 2) // fills 2 of it

	// Not due yet: Expire leaves it.
	if o, err := b.svc.Expire(b.ctx, gtd.ID); err != nil || order.Status(o.Status) != order.PartiallyFilled {
		t.Fatalf("Expire before the expiry = %s, %v; want it left PARTIALLY_FILLED", o.Status, err)
	}
	b.exec(`UPDATE orders SET expire_at = now() - interval '1 second' WHERE id = $1`, gtd.ID)
	o, err := b.svc.Expire(b.ctx, gtd.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, o, order.Expired, order.ReasonExpiredGTD)
	if o.OnBook || o.RemainingQuantity != 3 {
		t.Errorf("expired: on book %v, %d left; want off the book with its 3", o.OnBook, o.RemainingQuantity)
	}
	if again, err := b.svc.Expire(b.ctx, gtd.ID); err != nil || order.Status(again.Status) != order.Expired {
		t.Errorf("Expire again = %s, %v; want it left as it ended", again.Status, err)
	}

	// One that reaches the book after its expiry expires there, untraded.
	late := b.placeExpiring(3, 101, order.Sell, "99", 1, time.Now().Add(time.Hour))
	b.exec(`UPDATE orders SET expire_at = now() - interval '1 second' WHERE id = $1`, late.ID)
	res, _ = b.match(late.ID)
	wantStatus(t, res.Order, order.Expired, order.ReasonExpiredGTD)
	if tr := b.trades(late.ID); len(tr) != 0 {
		t.Errorf("an order past its expiry traded: %+v", tr)
	}
	b.audited()
}
