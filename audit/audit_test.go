package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

func mustAudit(t *testing.T, db *pgxpool.Pool, runs audit.RunLister, opts audit.Options) audit.Report {
	t.Helper()
	rep, err := audit.Run(context.Background(), db, runs, opts)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return rep
}

func describe(vs []audit.Violation) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %s order %d: %s", v.Check, v.OrderID, v.Detail)
	}
	return b.String()
}

func TestACleanHistoryHasNoViolations(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	d := newDataset(t, db)
	rep := mustAudit(t, db, healthyRuns(t, db), audit.Options{Grace: -1})
	if len(rep.Violations) > 0 {
		t.Errorf("violations in a history written by the real code:%s", describe(rep.Violations))
	}
	if rep.Orders != d.orders || rep.Trades != d.trades {
		t.Errorf("audited %d orders and %d trades, want %d and %d", rep.Orders, rep.Trades, d.orders, d.trades)
	}
}

func TestAnEmptyDatabaseHasNoViolations(t *testing.T) {
	t.Parallel()
	rep := mustAudit(t, newDB(t), fakeRuns{}, audit.Options{})
	if len(rep.Violations) > 0 || rep.Orders != 0 || rep.Trades != 0 {
		t.Errorf("empty database: %+v", rep)
	}
}

// Each case corrupts one clean dataset in its own database and names the check and the
// order that must be reported. The runs are Temporal as a healthy system would leave the
// corrupted database, unless the case changes them too.
func TestEachCheckReportsTheOrderThatBreaksIt(t *testing.T) {
	t.Parallel()
	// The dataset's orders are written as before run keys (queries.InsertOrder).
	wid := func(id int64) string { return workflows.OrderWorkflowID(id, "") }
	for _, tc := range []struct {
		name    string
		check   string
		also    []string // other checks the same corruption may trip
		corrupt func(t *testing.T, db *pgxpool.Pool, d dataset) (reported int64)
		runs    func(r fakeRuns, d dataset)
	}{
		{
			name: "an event that takes an executed order back to VALIDATED breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				appendEvent(t, db, d.b3, 0, "VALIDATED", "EXECUTED", "VALIDATED")
				return d.b3
			},
		},
		{
			name: "a gap in seq breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				appendEvent(t, db, d.s3, 1, "CANCEL_REQUESTED", "EXECUTING", "EXECUTING")
				return d.s3
			},
		},
		{
			name: "an annotation that changes the status breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				appendEvent(t, db, d.s3, 0, "CANCEL_REQUESTED", "EXECUTING", "CANCELLED")
				return d.s3
			},
		},
		{
			name: "an event that starts from another status than the last one left breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				appendEvent(t, db, d.s3, 0, "EXECUTED", "PARTIALLY_FILLED", "EXECUTED")
				return d.s3
			},
		},
		{
			name: "an event type the order package does not define breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				appendEvent(t, db, d.s3, 0, "PRICE_IMPROVED", "EXECUTING", "EXECUTING")
				return d.s3
			},
		},
		{
			name: "an order whose status is not where its timeline ends breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET status = 'CANCELLED', on_book = false WHERE id = $1`, d.s3)
				return d.s3
			},
		},
		{
			name: "a timeline that does not open with ORDER_PLACED is broken", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				// Only an operator bypassing the append-only trigger could do this.
				exec(t, db, `ALTER TABLE order_events DISABLE TRIGGER order_events_append_only`)
				exec(t, db, `UPDATE order_events SET event_type = 'VALIDATED', to_status = 'VALIDATED' WHERE order_id = $1 AND seq = 1`, d.r1)
				return d.r1
			},
		},
		{
			name: "an order without events breaks the timeline", check: audit.CheckTimeline,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `ALTER TABLE order_events DISABLE TRIGGER order_events_append_only`)
				exec(t, db, `DELETE FROM order_events WHERE order_id = $1`, d.b5)
				return d.b5
			},
		},
		{
			name: "a remaining quantity that disagrees with the trades breaks the fills", check: audit.CheckFills,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET remaining_quantity = remaining_quantity - 1 WHERE id = $1`, d.b2)
				return d.b2
			},
		},
		{
			name: "a negative remaining quantity breaks the fills", check: audit.CheckFills, also: []string{audit.CheckBook},
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `ALTER TABLE orders DROP CONSTRAINT orders_remaining_in_range, DROP CONSTRAINT orders_on_book_rests`)
				exec(t, db, `UPDATE orders SET remaining_quantity = -1 WHERE id = $1`, d.s3)
				return d.s3
			},
		},
		{
			name: "a lost trade breaks the fills of both its orders", check: audit.CheckFills,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `DELETE FROM trades WHERE id = $1`, d.t2)
				return d.s2
			},
		},
		{
			name: "a trade above the buyer's limit is reported on its aggressor", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE trades SET price = 101.5 WHERE id = $1`, d.t3)
				return d.b3
			},
		},
		{
			name: "a trade below the seller's limit is reported on its aggressor", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE trades SET price = 99.5 WHERE id = $1`, d.t1)
				return d.b1
			},
		},
		{
			name: "a trade away from the resting order's price is reported", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				// Within the resting buyer's limit, but the resting order sets the price.
				exec(t, db, `UPDATE trades SET price = 98.5 WHERE id = $1`, d.t2)
				return d.s2
			},
		},
		{
			name: "a trade between two orders of one user is reported", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET user_id = (SELECT user_id FROM orders WHERE id = $2) WHERE id = $1`, d.s1, d.b1)
				return d.b1
			},
		},
		{
			name: "a MARKET-vs-MARKET trade is reported", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET kind = 'MARKET', price = NULL, time_in_force = 'IOC' WHERE id = $1`, d.s1)
				return d.b1
			},
		},
		{
			name: "a trade on another instrument than its orders' is reported", check: audit.CheckTrades,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE trades SET instrument_id = 102 WHERE id = $1`, d.t1)
				return d.b1
			},
		},
		{
			name: "a buy order on the sell side of a trade is reported", check: audit.CheckTrades, also: []string{audit.CheckBook, audit.CheckPriority},
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET side = 'SELL' WHERE id = $1`, d.b2)
				return d.s2
			},
		},
		{
			name: "a resting sell at or below the best resting buy crosses the book", check: audit.CheckBook,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				return rest(t, db, 11, 101, order.Sell, order.Limit, "99", 1) // b2 bids 99
			},
		},
		{
			name: "a FOK order filled in part is reported", check: audit.CheckBook,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET time_in_force = 'FOK' WHERE id = $1`, d.p1) // p1 traded 1 of 4
				return d.p1
			},
		},
		{
			name: "an aggressor that passed over an order that arrived first breaks time priority", check: audit.CheckPriority,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				// A sell at s1's price that reached the book before everyone, still resting:
				// b1, which took s1 first, should have taken it instead.
				id := rest(t, db, 11, 101, order.Sell, order.Limit, "100", 1)
				exec(t, db, `UPDATE orders SET book_seq = 0 WHERE id = $1`, id)
				return d.b1
			},
		},
		{
			name: "a MARKET order left resting on the book is reported", check: audit.CheckBook,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				return rest(t, db, 11, 102, order.Sell, order.Market, "", 1)
			},
		},
		{
			name: "a resting order whose run has ended is reported", check: audit.CheckRuns,
			corrupt: func(_ *testing.T, _ *pgxpool.Pool, d dataset) int64 { return d.s3 },
			runs:    func(r fakeRuns, d dataset) { r[wid(d.s3)] = audit.Runs{Count: 1, Last: "Terminated"} },
		},
		{
			name: "a terminal order whose run still waits is reported", check: audit.CheckRuns,
			corrupt: func(_ *testing.T, _ *pgxpool.Pool, d dataset) int64 { return d.b5 },
			runs:    func(r fakeRuns, d dataset) { r[wid(d.b5)] = audit.Runs{Count: 1, Live: true, Last: "Running"} },
		},
		{
			name: "a resting order whose second run was terminated too is reported", check: audit.CheckRuns,
			corrupt: func(_ *testing.T, _ *pgxpool.Pool, d dataset) int64 { return d.s3 },
			runs:    func(r fakeRuns, d dataset) { r[wid(d.s3)] = audit.Runs{Count: 2, Last: "Terminated"} },
		},
		{
			name: "an order that never had a run is reported", check: audit.CheckRuns,
			corrupt: func(_ *testing.T, _ *pgxpool.Pool, d dataset) int64 { return d.r1 },
			runs:    func(r fakeRuns, d dataset) { delete(r, wid(d.r1)) },
		},
		{
			name: "a placed order whose message left the outbox long ago without a run is reported", check: audit.CheckRuns,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				deliver(t, db, d.fresh)
				return d.fresh
			},
			runs: func(r fakeRuns, d dataset) { delete(r, wid(d.fresh)) },
		},
		{
			name: "two orders with one user's Idempotency-Key are reported on the newer", check: audit.CheckIdempotency,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `ALTER TABLE orders DROP CONSTRAINT orders_idempotency`)
				dup := rest(t, db, 0, 101, order.Buy, order.Limit, "90", 1)
				exec(t, db, `UPDATE orders o SET user_id = b.user_id, idempotency_key = b.idempotency_key
					FROM orders b WHERE o.id = $1 AND b.id = $2`, dup, d.b3)
				return dup
			},
		},
		{
			name: "a replaced order whose replacement does not name it is reported", check: audit.CheckAmendments,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET replaces_order_id = NULL WHERE id = $1`, d.a3)
				return d.a2
			},
		},
		{
			name: "a replacement of an order that was not replaced is reported", check: audit.CheckAmendments,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET replaces_order_id = NULL WHERE id = $1`, d.a3)
				exec(t, db, `UPDATE orders SET replaces_order_id = $1 WHERE id = $2`, d.c1, d.a3)
				return d.a3
			},
		},
		{
			name: "an order amended in place whose quantity is not its last amendment's is reported", check: audit.CheckAmendments,
			corrupt: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET quantity = quantity + 1, remaining_quantity = remaining_quantity + 1 WHERE id = $1`, d.a1)
				return d.a1
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			d := newDataset(t, db)
			id := tc.corrupt(t, db, d)
			runs := healthyRuns(t, db)
			if tc.runs != nil {
				tc.runs(runs, d)
			}
			allowed := append([]string{tc.check}, tc.also...)
			// The whole database, and an audit scoped to the order: each variant of the
			// queries must find it.
			for _, scope := range [][]int64{nil, {id}} {
				rep := mustAudit(t, db, runs, audit.Options{OrderIDs: scope, Grace: -1})
				found := slices.ContainsFunc(rep.Violations, func(v audit.Violation) bool { return v.Check == tc.check && v.OrderID == id })
				if !found {
					t.Errorf("audit of orders %v: no %s violation for order %d; got:%s", scope, tc.check, id, describe(rep.Violations))
				}
				t.Logf("audit of orders %v:%s", scope, describe(rep.Violations))
				for _, v := range rep.Violations {
					if !slices.Contains(allowed, v.Check) {
						t.Errorf("audit of orders %v: unexpected %s violation for order %d: %s", scope, v.Check, v.OrderID, v.Detail)
					}
				}
			}
		})
	}
}

// The runs check leaves out the orders that cannot be expected to have a run yet, or any
// more; each case would be a violation without its exemption.
func TestTheRunsCheckExemptsOrdersThatCannotHaveARunYetOrAnyMore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    audit.Options
		prepare func(t *testing.T, db *pgxpool.Pool, d dataset) (runless int64)
		want    bool // a runs violation for the order
	}{
		{
			name:    "an order whose message is still in the outbox needs no run",
			opts:    audit.Options{Grace: -1},
			prepare: func(_ *testing.T, _ *pgxpool.Pool, d dataset) int64 { return d.fresh },
		},
		{
			name: "an order placed within the grace needs no run",
			prepare: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				deliver(t, db, d.fresh)
				return d.fresh
			},
		},
		{
			name: "an order placed before the grace needs a run",
			opts: audit.Options{Grace: time.Millisecond},
			prepare: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				deliver(t, db, d.fresh)
				exec(t, db, `UPDATE orders SET created_at = now() - interval '1 minute' WHERE id = $1`, d.fresh)
				return d.fresh
			},
			want: true,
		},
		{
			name: "a terminal order older than Temporal's retention needs no run",
			opts: audit.Options{Grace: -1, Retention: 24 * time.Hour},
			prepare: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET updated_at = now() - interval '2 days' WHERE id = $1`, d.b3)
				return d.b3
			},
		},
		{
			name: "a resting order older than Temporal's retention still needs its run",
			opts: audit.Options{Grace: -1, Retention: 24 * time.Hour},
			prepare: func(t *testing.T, db *pgxpool.Pool, d dataset) int64 {
				exec(t, db, `UPDATE orders SET updated_at = now() - interval '2 days' WHERE id = $1`, d.s3)
				return d.s3
			},
			want: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			d := newDataset(t, db)
			id := tc.prepare(t, db, d)
			runs := healthyRuns(t, db)
			delete(runs, workflows.OrderWorkflowID(id, ""))
			rep := mustAudit(t, db, runs, tc.opts)
			got := slices.ContainsFunc(rep.Violations, func(v audit.Violation) bool { return v.Check == audit.CheckRuns && v.OrderID == id })
			if got != tc.want || len(rep.Violations) > 1 {
				t.Errorf("runs violation for order %d: %v, want %v; got:%s", id, got, tc.want, describe(rep.Violations))
			}
		})
	}
}

func TestAnAuditScopedToSomeOrdersReportsOnlyTheirs(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	d := newDataset(t, db)
	exec(t, db, `UPDATE orders SET remaining_quantity = remaining_quantity - 1 WHERE id = ANY($1)`, []int64{d.b2, d.s3})
	rep := mustAudit(t, db, healthyRuns(t, db), audit.Options{OrderIDs: []int64{d.s3, d.st}, Grace: -1})
	if len(rep.Violations) != 1 || rep.Violations[0].OrderID != d.s3 || rep.Violations[0].Check != audit.CheckFills {
		t.Errorf("want one fills violation for order %d; got:%s", d.s3, describe(rep.Violations))
	}
	if rep.Orders != 2 || rep.Trades != 0 {
		t.Errorf("audited %d orders and %d trades, want 2 and 0", rep.Orders, rep.Trades)
	}
}

func TestWithoutARunListerOnlyTheDatabaseIsAudited(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	newDataset(t, db)
	// No run for any order: a violation each, were Temporal asked.
	if rep := mustAudit(t, db, nil, audit.Options{Grace: -1}); len(rep.Violations) > 0 {
		t.Errorf("violations without a run lister:%s", describe(rep.Violations))
	}
}
