package audit_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
	"github.com/orderflow/orderflow/schema"
	"github.com/orderflow/orderflow/workflows"
)

// cluster is the PostgreSQL cluster the package's tests share; each test gets a database
// of its own on it, so tests run in parallel and may corrupt their data freely.
var cluster *devstack.Postgres

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, stop, err := devstack.StartTempPostgres(ctx, "orderflow-audit-test-")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit tests: start PostgreSQL:", err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "audit tests:", err)
		}
	}()
	cluster = pg
	return m.Run()
}

// newDB returns a pool on a fresh, migrated database of its own.
func newDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	name := "audit_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL(name))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool
}

// exec runs statements that set up or corrupt a test's database.
func exec(t testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// dataset is a clean history written by the real code: orders placed as the API places
// them and moved through their lifecycle by the activities the workflow runs. Its fields
// name the orders and trades the corruption tests pick on.
type dataset struct {
	s1, b1, b2, s2, b3, s3, b4, b5, r1, c1, p1, s4, st, fresh int64
	a1, a2, a3                                                int64 // amended in place, replaced, its replacement
	t1, t2, t3, t4                                            int64 // trades
	orders, trades                                            int
}

// newDataset fills db with the dataset:
//
//	instrument 101: s1 SELL LIMIT 10@100 rests; b1 BUY MARKET 4 fills against it (t1);
//	                b2 BUY LIMIT 5@99 rests; s2 SELL MARKET 2 fills against b2 (t2), which
//	                stays PARTIALLY_FILLED on the book; b3 BUY LIMIT 6@101 takes the rest of
//	                s1 (t3); s3 SELL LIMIT 3@102 rests; b4, user 1's BUY LIMIT 1@103, would
//	                have traded with user 1's s3 and is cancelled (self-trade prevention)
//	instrument 102: b5 BUY MARKET 5 finds no liquidity (FAILED); c1 SELL LIMIT 2@105 rests
//	                and is cancelled by its client (CANCEL_REQUESTED, CANCELLED)
//	instrument 103: p1 BUY LIMIT 4@50 rests, s4 SELL MARKET 1 fills it in part (t4), and
//	                p1 is cancelled (PARTIALLY_CANCELLED); st BUY LIMIT 1@10 is parked
//	                before SendToExecutor, retried by an operator, and rests
//	instrument 999: r1 is REJECTED (unknown instrument)
//	fresh is placed and its message is still in the outbox.
//	instrument 102: a1 SELL LIMIT 5@110 rests and is amended in place to 4 (AMENDED); a2
//	                SELL LIMIT 3@111 rests and a new price replaces it with a3 at 112,
//	                which rests.
func newDataset(t *testing.T, db *pgxpool.Pool) dataset {
	t.Helper()
	ctx := context.Background()
	acts := activities.New(orderbook.New(db, nil, orderbook.Config{}), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	var d dataset
	lim := func(user, inst int64, side order.Side, price string, qty int64) int64 {
		return place(t, db, user, inst, side, order.Limit, price, qty)
	}
	mkt := func(user, inst int64, side order.Side, qty int64) int64 {
		return place(t, db, user, inst, side, order.Market, "", qty)
	}
	run := func(id int64) int64 {
		t.Helper()
		execute(t, db, acts, id)
		return id
	}
	d.s1 = run(lim(1, 101, order.Sell, "100", 10))
	d.b1 = run(mkt(2, 101, order.Buy, 4))
	d.b2 = run(lim(3, 101, order.Buy, "99", 5))
	d.s2 = run(mkt(4, 101, order.Sell, 2))
	d.b3 = run(lim(2, 101, order.Buy, "101", 6))
	d.s3 = run(lim(1, 101, order.Sell, "102", 3))
	d.b4 = run(lim(1, 101, order.Buy, "103", 1))
	d.b5 = run(mkt(5, 102, order.Buy, 5))
	d.c1 = run(lim(6, 102, order.Sell, "105", 2))
	requestCancel(t, db, acts, d.c1)
	d.p1 = run(lim(7, 103, order.Buy, "50", 4))
	d.s4 = run(mkt(8, 103, order.Sell, 1))
	requestCancel(t, db, acts, d.p1)
	d.r1 = run(lim(5, 999, order.Buy, "1", 1))

	d.st = lim(9, 103, order.Buy, "10", 1)
	deliver(t, db, d.st)
	step(t, acts.Validate, d.st)
	for _, f := range []func() (activities.StepResult, error){
		func() (activities.StepResult, error) {
			return acts.MarkStalled(ctx, activities.StallInput{OrderID: d.st, Step: "SendToExecutor", Error: "database down", Attempts: 12})
		},
		func() (activities.StepResult, error) {
			return acts.Resume(ctx, activities.ResumeInput{OrderID: d.st, Step: "SendToExecutor", RequestedBy: "operator"})
		},
	} {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
	step(t, acts.SendToExecutor, d.st)
	if _, err := acts.Execute(ctx, d.st); err != nil {
		t.Fatal(err)
	}
	d.fresh = mkt(10, 101, order.Buy, 1)
	amend := func(id, qty int64, price string) orderbook.AmendResult {
		t.Helper()
		req := orderbook.AmendRequest{OrderID: id, AmendID: rand.Text(), Quantity: qty}
		if price != "" {
			req.Price = decimal.NewNullDecimal(decimal.RequireFromString(price))
		}
		res, err := orderbook.New(db, nil, orderbook.Config{}).Amend(ctx, req)
		if err != nil || !res.Outcome.Applied() {
			t.Fatalf("amend %d: %+v, %v", id, res, err)
		}
		return res
	}
	d.a1 = run(lim(11, 102, order.Sell, "110", 5))
	amend(d.a1, 4, "")
	d.a2 = run(lim(12, 102, order.Sell, "111", 3))
	d.a3 = run(amend(d.a2, 0, "112").Replacement.ID)

	trade := func(buy, sell int64) int64 {
		t.Helper()
		var id int64
		if err := db.QueryRow(ctx, `SELECT id FROM trades WHERE buy_order_id = $1 AND sell_order_id = $2`, buy, sell).Scan(&id); err != nil {
			t.Fatalf("trade %d/%d: %v", buy, sell, err)
		}
		return id
	}
	d.t1, d.t2, d.t3, d.t4 = trade(d.b1, d.s1), trade(d.b2, d.s2), trade(d.b3, d.s1), trade(d.p1, d.s4)
	d.orders, d.trades = 17, 4

	// The dataset is what its comment says, or the corruption tests would test nothing.
	want := map[int64]order.Status{
		d.s1: order.Executed, d.b1: order.Executed, d.b2: order.PartiallyFilled, d.s2: order.Executed,
		d.b3: order.Executed, d.s3: order.Executing, d.b4: order.Cancelled, d.b5: order.Failed,
		d.c1: order.Cancelled, d.p1: order.PartiallyCancelled, d.s4: order.Executed, d.st: order.Executing,
		d.r1: order.Rejected, d.fresh: order.Created,
		d.a1: order.Executing, d.a2: order.Cancelled, d.a3: order.Executing,
	}
	for id, st := range want {
		var got string
		if err := db.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, id).Scan(&got); err != nil || got != string(st) {
			t.Fatalf("dataset: order %d is %s (%v), want %s", id, got, err, st)
		}
	}
	return d
}

// place writes an order as POST /api/v1/orders does: the order, its ORDER_PLACED event
// and its outbox message in one transaction.
func place(t *testing.T, db *pgxpool.Pool, user, inst int64, side order.Side, kind order.Kind, price string, qty int64) int64 {
	t.Helper()
	ctx := context.Background()
	tif := order.GTC
	var p decimal.NullDecimal
	if kind == order.Market {
		tif = order.IOC
	} else {
		p = decimal.NewNullDecimal(decimal.RequireFromString(price))
	}
	var id int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		q := queries.New(tx)
		o, err := q.InsertOrder(ctx, queries.InsertOrderParams{
			UserID: user, InstrumentID: inst, Side: string(side), Kind: string(kind), Price: p, Quantity: qty,
			TimeInForce: string(tif), IdempotencyKey: rand.Text(), RequestHash: "h",
		})
		if err != nil {
			return err
		}
		id = o.ID
		if _, err := q.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
			OrderID: o.ID, EventType: string(order.EventOrderPlaced), ToStatus: string(order.Created), Details: []byte(`{}`),
		}); err != nil {
			return err
		}
		msg := kafka.ExecutionMessage{OrderID: o.ID, UserID: user, InstrumentID: inst, Side: string(side), Kind: string(kind)}
		return q.InsertOutbox(ctx, queries.InsertOutboxParams{Topic: kafka.TopicOrderExecution, Key: msg.Key(), Payload: msg.Encode()})
	})
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	return id
}

// deliver removes the order's outbox message, as the relay does once Kafka has it.
func deliver(t *testing.T, db *pgxpool.Pool, id int64) {
	t.Helper()
	exec(t, db, `DELETE FROM outbox WHERE key = $1::bigint::text`, id)
}

func step(t *testing.T, f func(context.Context, int64) (activities.StepResult, error), id int64) activities.StepResult {
	t.Helper()
	r, err := f(context.Background(), id)
	if err != nil {
		t.Fatalf("order %d: %v", id, err)
	}
	return r
}

// execute runs the order's lifecycle steps as its workflow would, up to where it rests
// or ends.
func execute(t *testing.T, db *pgxpool.Pool, acts *activities.Activities, id int64) {
	t.Helper()
	deliver(t, db, id)
	if r := step(t, acts.Validate, id); r.Status.Terminal() {
		return
	}
	step(t, acts.SendToExecutor, id)
	if _, err := acts.Execute(context.Background(), id); err != nil {
		t.Fatalf("execute %d: %v", id, err)
	}
}

// requestCancel records a client's cancel as the API does, then applies it as the
// workflow does.
func requestCancel(t *testing.T, db *pgxpool.Pool, acts *activities.Activities, id int64) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		q := queries.New(tx)
		o, err := q.MarkCancelRequested(ctx, queries.MarkCancelRequestedParams{ID: id, TerminalStatuses: order.Names(order.TerminalStatuses())})
		if err != nil {
			return err
		}
		_, err = q.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
			OrderID: id, EventType: string(order.EventCancelRequested), FromStatus: &o.Status, ToStatus: o.Status, Details: []byte(`{}`),
		})
		return err
	})
	if err != nil {
		t.Fatalf("request cancel %d: %v", id, err)
	}
	if _, err := acts.Cancel(ctx, activities.CancelInput{OrderID: id, RequestedBy: "api"}); err != nil {
		t.Fatalf("cancel %d: %v", id, err)
	}
}

// rest writes an order straight onto the book, with a valid timeline and no trades, as
// no code path would: for tests that need a book the matching engine would never leave.
func rest(t *testing.T, db *pgxpool.Pool, user, inst int64, side order.Side, kind order.Kind, price string, qty int64) int64 {
	t.Helper()
	ctx := context.Background()
	tif, p := order.GTC, any(price)
	if kind == order.Market {
		tif, p = order.IOC, nil
	}
	var id int64
	if err := db.QueryRow(ctx, `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
		                    status, time_in_force, idempotency_key, request_hash, book_seq)
		VALUES ($1, $2, $3, $4, $5::numeric, $6, $6, 'EXECUTING', $7, $8, 'h', nextval('order_book_seq'))
		RETURNING id`, user, inst, side, kind, p, qty, tif, rand.Text()).Scan(&id); err != nil {
		t.Fatalf("rest: %v", err)
	}
	exec(t, db, `
		INSERT INTO order_events (order_id, seq, event_type, from_status, to_status) VALUES
		    ($1, 1, 'ORDER_PLACED', NULL, 'CREATED'),
		    ($1, 2, 'VALIDATED', 'CREATED', 'VALIDATED'),
		    ($1, 3, 'SENT_TO_EXECUTOR', 'VALIDATED', 'SENT_TO_EXECUTOR'),
		    ($1, 4, 'EXECUTING', 'SENT_TO_EXECUTOR', 'EXECUTING')`, id)
	// Straight onto the book, past the constraint that keeps what cannot rest off it.
	exec(t, db, `ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_on_book_rests`)
	exec(t, db, `UPDATE orders SET on_book = true WHERE id = $1`, id)
	return id
}

// appendEvent appends an event after the order's last one, or gap events later.
func appendEvent(t *testing.T, db *pgxpool.Pool, id int64, gap int, typ, from, to string) {
	t.Helper()
	exec(t, db, `
		INSERT INTO order_events (order_id, seq, event_type, from_status, to_status)
		SELECT $1, max(seq) + 1 + $2, $3, $4, $5 FROM order_events WHERE order_id = $1`, id, gap, typ, from, to)
}

// fakeRuns is Temporal as a healthy system leaves it, for the orders in db: one run per
// order whose message left the outbox, live while the order is not terminal.
type fakeRuns map[string]audit.Runs

// OrderRuns implements audit.RunLister.
func (f fakeRuns) OrderRuns(context.Context) (map[string]audit.Runs, error) { return f, nil }

func healthyRuns(t *testing.T, db *pgxpool.Pool) fakeRuns {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT id, status, run_key FROM orders o
		WHERE NOT EXISTS (SELECT 1 FROM outbox x WHERE x.key = o.id::text)`)
	if err != nil {
		t.Fatal(err)
	}
	runs := fakeRuns{}
	for rows.Next() {
		var id int64
		var status, key string
		if err := rows.Scan(&id, &status, &key); err != nil {
			t.Fatal(err)
		}
		live := !order.Status(status).Terminal()
		last := "Completed"
		if live {
			last = "Running"
		}
		runs[workflows.OrderWorkflowID(id, key)] = audit.Runs{Count: 1, Live: live, Last: last}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return runs
}
