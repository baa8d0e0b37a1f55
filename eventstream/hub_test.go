package eventstream_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/eventstream"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// cluster is the PostgreSQL cluster the package's tests share, each test on a database
// of its own.
var cluster *devstack.Postgres

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, "eventstream", func(pg *devstack.Postgres) { cluster = pg }))
}

// fixture is one test's hub, running on a database of its own, and the order-book
// service that writes the events it streams.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	hub  *eventstream.Hub
	book *orderbook.Service
	stop func() // stops the hub and waits for Run to return
}

func newFixture(t *testing.T, cfg eventstream.Config) *fixture {
	t.Helper()
	pool, err := cluster.NewDatabase(context.Background(), "evst_", 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	hub := eventstream.New(pool, nil, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	f := &fixture{t: t, ctx: context.Background(), pool: pool, hub: hub, book: orderbook.New(pool, nil, orderbook.Config{})}
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context's end")
		}
	}
	t.Cleanup(f.stop)
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the hub was not ready within 10s")
	}
	return f
}

func (f *fixture) subscribe(filter eventstream.Filter) *eventstream.Subscription {
	f.t.Helper()
	s, err := f.hub.Subscribe(f.ctx, filter)
	if err != nil {
		f.t.Fatalf("subscribe %+v: %v", filter, err)
	}
	f.t.Cleanup(s.Close)
	return s
}

// place places a LIMIT order of user (price "" is a MARKET order) as the API does.
func (f *fixture) place(user int64, side order.Side, price string, qty int64) queries.Order {
	f.t.Helper()
	no := orderbook.NewOrder{UserID: user, InstrumentID: 101, Side: side, Kind: order.Market, Quantity: qty,
		TimeInForce: order.IOC, IdempotencyKey: rand.Text(), RequestHash: "h"}
	if price != "" {
		no.Kind, no.TimeInForce = order.Limit, order.GTC
		no.Price = decimal.NewNullDecimal(decimal.RequireFromString(price))
	}
	res, err := f.book.Place(f.ctx, no)
	if err != nil || !res.Created {
		f.t.Fatalf("place: %+v, %v", res, err)
	}
	return res.Order
}

// toBook validates, dispatches and matches order id, as its run does.
func (f *fixture) toBook(id int64) orderbook.MatchResult {
	f.t.Helper()
	if _, err := f.book.Validate(f.ctx, id); err != nil {
		f.t.Fatalf("validate %d: %v", id, err)
	}
	if _, err := f.book.Dispatch(f.ctx, id); err != nil {
		f.t.Fatalf("dispatch %d: %v", id, err)
	}
	res, err := f.book.Match(f.ctx, id)
	if err != nil {
		f.t.Fatalf("match %d: %v", id, err)
	}
	return res
}

// insertEvent inserts an event of order id in tx (or in a transaction of its own).
func (f *fixture) insertEvent(db queries.DBTX, id int64, kind string) queries.OrderEvent {
	f.t.Helper()
	e, err := queries.New(db).InsertOrderEvent(f.ctx, queries.InsertOrderEventParams{
		OrderID: id, EventType: kind, ToStatus: "CREATED", Details: []byte(`{}`)})
	if err != nil {
		f.t.Fatalf("insert event: %v", err)
	}
	return e
}

// userEvents is user's events in the database, in stream order.
func (f *fixture) userEvents(user int64) []int64 {
	f.t.Helper()
	rows, err := f.pool.Query(f.ctx, `SELECT e.id FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE o.user_id = $1 ORDER BY e.xact, e.id`, user)
	if err != nil {
		f.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// receive takes s's events until it has n or the deadline passes.
func receive(t *testing.T, s *eventstream.Subscription, n int) []*eventstream.Event {
	t.Helper()
	var got []*eventstream.Event
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case <-s.Pending():
			got = append(got, s.Take()...)
		case <-s.Done():
			t.Fatalf("subscription ended (%v) after %d of %d events", s.Err(), len(got), n)
		case <-deadline:
			t.Fatalf("received %d of %d events within 10s", len(got), n)
		}
	}
	return got
}

func ids(events []*eventstream.Event) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// waitFor waits up to 10s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAnEventWhoseTransactionCommitsLateIsStreamedInPlaceNotSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	sub := f.subscribe(eventstream.Filter{UserID: 1})
	early, late := f.place(1, order.Buy, "10", 1), f.place(1, order.Buy, "10", 1)
	receive(t, sub, 2) // the two ORDER_PLACED events

	// The transaction that draws the lower id (and the lower xact) commits last.
	slow, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Rollback(f.ctx) }()
	first := f.insertEvent(slow, early.ID, "SLOW")
	second := f.insertEvent(f.pool, late.ID, "FAST")
	if first.ID > second.ID || first.Xact >= second.Xact {
		t.Fatalf("setup: the slow transaction's event (id %d, xact %d) should come first (id %d, xact %d)", first.ID, first.Xact, second.ID, second.Xact)
	}
	// The hub has read (at least twice: the notification, then a re-read for the event
	// held back) since the fast transaction committed; it must still hold it back.
	reads := f.hub.Stats().Reads
	waitFor(t, "two reads after the fast commit", func() bool { return f.hub.Stats().Reads >= reads+2 })
	if got := sub.Take(); len(got) != 0 {
		t.Fatalf("streamed %v while an older transaction was open: it would then skip that transaction's event", ids(got))
	}
	if err := slow.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	got := receive(t, sub, 2)
	if want := []int64{first.ID, second.ID}; !slices.Equal(ids(got), want) {
		t.Errorf("streamed %v, want %v (stream order: the slow transaction's first)", ids(got), want)
	}
	if all := f.userEvents(1); !slices.Equal(all[2:], ids(got)) {
		t.Errorf("user 1's events after the placements are %v, streamed %v", all[2:], ids(got))
	}
}

func TestASubscriberThatFallsBehindIsDroppedWhileAnotherReceivesEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{Buffer: 4})
	slow := f.subscribe(eventstream.Filter{UserID: 1})
	fast := f.subscribe(eventstream.Filter{UserID: 1})
	o := f.place(1, order.Buy, "10", 1)
	var got []*eventstream.Event
	got = append(got, receive(t, fast, 1)...)
	// One event a transaction, each taken by fast before the next: only slow, which
	// takes nothing, falls behind.
	for i := range 10 {
		f.insertEvent(f.pool, o.ID, "EVENT")
		got = append(got, receive(t, fast, 1)...)
		if i == 2 { // the placement and three: four events wait
			select {
			case <-slow.Done():
				t.Fatal("slow was dropped with 4 events waiting, which its buffer holds")
			default:
			}
		}
	}
	select {
	case <-slow.Done():
		if !errors.Is(slow.Err(), eventstream.ErrTooSlow) {
			t.Errorf("slow ended with %v, want ErrTooSlow", slow.Err())
		}
	default:
		t.Fatal("slow was not dropped with 11 events for a buffer of 4")
	}
	if want := f.userEvents(1); !slices.Equal(ids(got), want) {
		t.Errorf("fast received %v, want every event of user 1: %v", ids(got), want)
	}
	if st := f.hub.Stats(); st.Dropped != 1 || st.Subscribers != 1 {
		t.Errorf("stats %+v, want 1 dropped and 1 subscriber left", st)
	}
}

func TestAStreamHoldsOnlyItsUsersOrOrdersEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	mine := f.subscribe(eventstream.Filter{UserID: 1})
	theirs := f.subscribe(eventstream.Filter{UserID: 2})
	a, b := f.place(1, order.Buy, "10", 1), f.place(1, order.Buy, "11", 1)
	// Once both placements are out, a subscription to b starts after its first event.
	got := ids(receive(t, mine, 2))
	one := f.subscribe(eventstream.Filter{UserID: 1, OrderID: b.ID})
	f.place(2, order.Sell, "20", 1)
	f.toBook(a.ID)
	f.toBook(b.ID)
	want := f.userEvents(1)
	if got = append(got, ids(receive(t, mine, len(want)-2))...); !slices.Equal(got, want) {
		t.Errorf("user 1's stream: %v, want %v", got, want)
	}
	if got := ids(receive(t, theirs, 1)); !slices.Equal(got, f.userEvents(2)) {
		t.Errorf("user 2's stream: %v, want %v", got, f.userEvents(2))
	}
	events, err := f.book.Events(f.ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wantB []int64
	for _, e := range events[1:] { // its ORDER_PLACED committed before the subscription
		wantB = append(wantB, e.ID)
	}
	if got := ids(receive(t, one, len(wantB))); !slices.Equal(got, wantB) {
		t.Errorf("order %d's stream: %v, want %v", b.ID, got, wantB)
	}
	// Nothing else is waiting: user 2's sell ended its timeline at its placement.
	for name, s := range map[string]*eventstream.Subscription{"user 1": mine, "user 2": theirs, "the order": one} {
		if extra := s.Take(); len(extra) != 0 {
			t.Errorf("%s's stream has more: %v", name, ids(extra))
		}
	}
}

func TestAMatchWritingEventsInOneStatementNotifiesTheStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	sell := f.place(2, order.Sell, "10", 5)
	f.toBook(sell.ID)
	buy := f.place(1, order.Buy, "10", 5)
	if _, err := f.book.Validate(f.ctx, buy.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book.Dispatch(f.ctx, buy.ID); err != nil {
		t.Fatal(err)
	}
	// A session of its own listening from now on: only the match's commit can notify it.
	conn, err := pgx.ConnectConfig(f.ctx, f.pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(f.ctx) }()
	if _, err := conn.Exec(f.ctx, "LISTEN "+eventstream.Channel); err != nil {
		t.Fatal(err)
	}
	sub := f.subscribe(eventstream.Filter{UserID: 1})
	res, err := f.book.Match(f.ctx, buy.ID)
	if err != nil || order.Status(res.Order.Status) != order.Executed {
		t.Fatalf("match: %+v, %v; want the buy EXECUTED", res.Order, err)
	}
	wait, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	if _, err := conn.WaitForNotification(wait); err != nil {
		t.Fatalf("no notification from the match's ApplyChanges (events inserted in a CTE): %v", err)
	}
	// Earlier events of the buy may come first: they may not have been read when the
	// subscription began.
	for {
		got := receive(t, sub, 1)
		if e := got[len(got)-1]; e.OrderID == buy.ID && e.ToStatus == string(order.Executed) {
			return
		}
	}
}

func TestTheHubReadsWhatCommittedWhileItsListenConnectionWasDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	sub := f.subscribe(eventstream.Filter{UserID: 1})
	o := f.place(1, order.Buy, "10", 1)
	receive(t, sub, 1)
	killListener := func() int {
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN order_events'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := killListener(); n != 1 {
		t.Fatalf("terminated %d listening sessions, want the hub's one", n)
	}
	// Written while nobody listens, or before the hub listens again.
	e1 := f.insertEvent(f.pool, o.ID, "WHILE_DOWN")
	e2 := f.insertEvent(f.pool, o.ID, "WHILE_DOWN")
	if got := ids(receive(t, sub, 2)); !slices.Equal(got, []int64{e1.ID, e2.ID}) {
		t.Errorf("streamed %v, want %v", got, []int64{e1.ID, e2.ID})
	}
	waitFor(t, "the hub listening again", func() bool {
		var n int
		_ = f.pool.QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN order_events'`).Scan(&n)
		return n == 1
	})
	e3 := f.insertEvent(f.pool, o.ID, "AFTER")
	if got := ids(receive(t, sub, 1)); !slices.Equal(got, []int64{e3.ID}) {
		t.Errorf("streamed %v, want %v", got, []int64{e3.ID})
	}
}

func TestStoppingTheHubEndsItsSubscriptionsAndGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newFixture(t, eventstream.Config{MaxSubscribers: 2})
	a := f.subscribe(eventstream.Filter{UserID: 1})
	f.subscribe(eventstream.Filter{UserID: 2, OrderID: 7})
	if _, err := f.hub.Subscribe(f.ctx, eventstream.Filter{UserID: 3}); !errors.Is(err, eventstream.ErrTooMany) {
		t.Errorf("a third subscription of two allowed: %v, want ErrTooMany", err)
	}
	f.stop()
	select {
	case <-a.Done():
		if !errors.Is(a.Err(), eventstream.ErrClosed) {
			t.Errorf("ended with %v, want ErrClosed", a.Err())
		}
	default:
		t.Error("a subscription outlived its hub")
	}
	if _, err := f.hub.Subscribe(f.ctx, eventstream.Filter{UserID: 1}); !errors.Is(err, eventstream.ErrClosed) {
		t.Errorf("subscribe to a stopped hub: %v, want ErrClosed", err)
	}
	f.pool.Close()
	waitFor(t, "the hub's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// With no subscriber the hub reads nothing at all, and a later subscriber is served
// from the present on. (It may also be handed events committed just before it
// subscribed, at or above the horizon, which is cluster-wide; never one after it missed.)
func TestAHubWithoutSubscribersReadsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	first := f.subscribe(eventstream.Filter{UserID: 1})
	o := f.place(1, order.Buy, "10", 1)
	receive(t, first, 1)
	first.Close()

	// The reader is one goroutine: once it has skipped a wake-up, no read is in flight.
	skipped := f.hub.Stats().Skipped
	f.insertEvent(f.pool, o.ID, "UNWATCHED")
	waitFor(t, "the hub to skip a wake-up", func() bool { return f.hub.Stats().Skipped > skipped })
	before := f.hub.Stats()
	f.insertEvent(f.pool, o.ID, "UNWATCHED")
	waitFor(t, "the hub to skip the next one", func() bool { return f.hub.Stats().Skipped > before.Skipped })
	if after := f.hub.Stats(); after.Reads != before.Reads {
		t.Errorf("the hub read %d times with no subscriber, want none", after.Reads-before.Reads)
	}

	next := f.subscribe(eventstream.Filter{UserID: 1})
	e := f.insertEvent(f.pool, o.ID, "WATCHED")
	for {
		got := receive(t, next, 1)
		if got[len(got)-1].ID == e.ID {
			break
		}
	}
}

// An event that committed before a subscription, but above the horizon it started at
// (an older transaction was open), reaches the subscriber once that transaction ends,
// though nothing notifies any more.
func TestASubscriberAfterAnIdleSpellGetsWhatCommittedAboveItsStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, eventstream.Config{})
	o := f.place(1, order.Buy, "10", 1)
	skipped := f.hub.Stats().Skipped
	// An open transaction with an id holds the horizon below the event written next.
	held, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback(f.ctx) }()
	if _, err := held.Exec(f.ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	e := f.insertEvent(f.pool, o.ID, "ABOVE_THE_HORIZON")
	waitFor(t, "the hub to skip the wake-up, having no subscriber", func() bool { return f.hub.Stats().Skipped > skipped })
	sub := f.subscribe(eventstream.Filter{UserID: 1})
	if err := held.Rollback(f.ctx); err != nil { // writes no event: notifies no one
		t.Fatal(err)
	}
	for {
		got := receive(t, sub, 1)
		if got[len(got)-1].ID == e.ID {
			return
		}
	}
}
