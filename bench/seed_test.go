package bench_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/bench"
)

// noRuns is a Temporal that knows no order runs at all, as after a seed: no seeded
// order ever had one.
type noRuns struct{}

// OrderRuns implements audit.RunLister.
func (noRuns) OrderRuns(context.Context) (map[string]audit.Runs, error) {
	return map[string]audit.Runs{}, nil
}

func seed(t *testing.T, db *pgxpool.Pool, opts bench.SeedOptions) bench.SeedResult {
	t.Helper()
	res, err := bench.Seed(context.Background(), db, opts)
	if err != nil {
		t.Fatalf("seed %+v: %v", opts, err)
	}
	return res
}

// mustBeClean audits db twice, without Temporal and with a Temporal that knows no runs
// and keeps closed ones for 24 hours (the dev server's retention), and fails on any
// violation. It returns the report.
func mustBeClean(t *testing.T, db *pgxpool.Pool) audit.Report {
	t.Helper()
	ctx := context.Background()
	rep, err := audit.Run(ctx, db, nil, audit.Options{})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	withRuns, err := audit.Run(ctx, db, noRuns{}, audit.Options{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatalf("audit with runs: %v", err)
	}
	for _, vs := range [][]audit.Violation{rep.Violations, withRuns.Violations} {
		var b strings.Builder
		for i, v := range vs {
			if i == 10 {
				fmt.Fprintf(&b, "\n  … and %d more", len(vs)-10)
				break
			}
			fmt.Fprintf(&b, "\n  %s order %d: %s", v.Check, v.OrderID, v.Detail)
		}
		if len(vs) > 0 {
			t.Errorf("%d violations on a seeded database:%s", len(vs), b.String())
		}
	}
	return rep
}

func count(t *testing.T, db *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestASeededDatabaseLeavesTheAuditorCleanWithTheExpectedCounts(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	// 600 a chunk: three whole chunks and a short one.
	res := seed(t, db, bench.SeedOptions{Orders: 2000, Users: 50, Chunk: 600})
	if res.Existing != 0 || res.Inserted != 2000 || res.Trades != 800 || res.Events != 10500 {
		t.Errorf("seed = %+v, want 2000 orders, 800 trades (8 in 20 orders) and 10500 events (105 in 20)", res)
	}
	rep := mustBeClean(t, db)
	if rep.Orders != 2000 || rep.Trades != 800 {
		t.Errorf("audited %d orders and %d trades, want 2000 and 800", rep.Orders, rep.Trades)
	}

	ctx := context.Background()
	rows, err := db.Query(ctx, `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	byStatus, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		S string
		N int
	}, error) {
		var v struct {
			S string
			N int
		}
		return v, r.Scan(&v.S, &v.N)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, v := range byStatus {
		got[v.S] = v.N
	}
	want := map[string]int{"EXECUTED": 1200, "PARTIALLY_CANCELLED": 400, "CANCELLED": 200, "REJECTED": 100, "FAILED": 100}
	if !maps.Equal(got, want) {
		t.Errorf("orders by status = %v, want %v", got, want)
	}

	for _, c := range []struct {
		what string
		sql  string
		want int
	}{
		{"orders without the seed's key", `SELECT count(*) FROM orders WHERE idempotency_key NOT LIKE 'scale-seed-%'`, 0},
		{"outbox messages", `SELECT count(*) FROM outbox`, 0},
		{"users", `SELECT count(DISTINCT user_id) FROM orders`, 50},
		{"instruments other than 101–103", `SELECT count(*) FROM orders WHERE instrument_id NOT IN (101, 102, 103)`, 0},
		{"orders on a book", `SELECT count(*) FROM orders WHERE on_book`, 0},
		{"orders that reached matching without a book sequence",
			`SELECT count(*) FROM orders o WHERE book_seq IS NULL AND EXISTS (
			     SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.event_type = 'EXECUTING')`, 0},
		{"orders with a book sequence that never reached matching",
			`SELECT count(*) FROM orders o WHERE book_seq IS NOT NULL AND NOT EXISTS (
			     SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.event_type = 'EXECUTING')`, 0},
		{"book sequences out of the ids' order",
			`SELECT count(*) FROM (SELECT book_seq, lag(book_seq) OVER (ORDER BY id) AS prev FROM orders WHERE book_seq IS NOT NULL) s
			 WHERE s.book_seq <= s.prev`, 0},
		{"trades whose buy is not the later order (the taker)", `SELECT count(*) FROM trades WHERE buy_order_id < sell_order_id`, 0},
		{"events later than their order's updated_at",
			`SELECT count(*) FROM order_events e JOIN orders o ON o.id = e.order_id WHERE e.created_at > o.updated_at`, 0},
		{"events earlier than the one before them",
			`SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (PARTITION BY order_id ORDER BY seq) AS prev FROM order_events) e
			 WHERE e.created_at < e.prev`, 0},
		{"orders changed within the last week (inside a namespace's retention)",
			`SELECT count(*) FROM orders WHERE updated_at > now() - interval '7 days'`, 0},
		{"fill events without their trade",
			`SELECT count(*) FROM order_events e WHERE e.details ? 'fillQuantity' AND NOT EXISTS (
			     SELECT 1 FROM trades t WHERE t.id = (e.details->>'tradeId')::bigint
			       AND e.order_id IN (t.buy_order_id, t.sell_order_id)
			       AND t.quantity = (e.details->>'fillQuantity')::bigint)`, 0},
	} {
		if n := count(t, db, c.sql); n != c.want {
			t.Errorf("%s: %d, want %d", c.what, n, c.want)
		}
	}
}

func TestASecondSeedWritesOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	// The first run is interrupted after its first chunk.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := bench.SeedOptions{Orders: 1000, Users: 20, Chunk: 400, Progress: func(int, int, time.Duration) { cancel() }}
	if _, err := bench.Seed(ctx, db, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted seed = %v, want context.Canceled", err)
	}
	opts.Progress = nil
	if res := seed(t, db, opts); res.Existing != 400 || res.Inserted != 600 {
		t.Errorf("seed after an interrupted one = %+v, want 400 existing and 600 written", res)
	}
	if res := seed(t, db, opts); res.Existing != 1000 || res.Inserted != 0 {
		t.Errorf("rerun = %+v, want 1000 existing and nothing written", res)
	}
	if rep := mustBeClean(t, db); rep.Orders != 1000 || rep.Trades != 400 {
		t.Errorf("audited %d orders and %d trades, want 1000 and 400", rep.Orders, rep.Trades)
	}
	if n := count(t, db, `SELECT count(DISTINCT idempotency_key) FROM orders WHERE idempotency_key LIKE 'scale-seed-%'`); n != 1000 {
		t.Errorf("%d distinct seed keys, want 1000", n)
	}
	// The orders were written in the seed's order: ids and placing times grow together.
	if n := count(t, db, `SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS prev FROM orders) o
	                      WHERE o.created_at <= o.prev`); n != 0 {
		t.Errorf("%d orders placed no later than the order before them", n)
	}
	// A larger seed would run the timeline into the last week, where the orders would
	// need runs.
	opts.Orders = 2000
	if _, err := bench.Seed(context.Background(), db, opts); !errors.Is(err, bench.ErrSeedMismatch) {
		t.Errorf("growing the seed = %v, want ErrSeedMismatch", err)
	}
}

// The audit's priority check compares an aggressor's book sequence with those of the
// orders resting when it came; orders resting before the seed must not look jumped by the
// seed's takers.
func TestSeedingBesideARestingOrderLeavesTheAuditorClean(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := context.Background()
	var id int64
	if err := db.QueryRow(ctx, `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity, status,
		                    time_in_force, idempotency_key, request_hash, book_seq, on_book)
		VALUES (424242, 101, 'SELL', 'LIMIT', 50.00, 5, 5, 'EXECUTING', 'GTC', 'resting', 'h', nextval('order_book_seq'), true)
		RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `
		INSERT INTO order_events (order_id, seq, event_type, from_status, to_status) VALUES
		    ($1, 1, 'ORDER_PLACED', NULL, 'CREATED'),
		    ($1, 2, 'VALIDATED', 'CREATED', 'VALIDATED'),
		    ($1, 3, 'SENT_TO_EXECUTOR', 'VALIDATED', 'SENT_TO_EXECUTOR'),
		    ($1, 4, 'EXECUTING', 'SENT_TO_EXECUTOR', 'EXECUTING')`, id); err != nil {
		t.Fatal(err)
	}
	seed(t, db, bench.SeedOptions{Orders: 200, Users: 10, Chunk: 200})
	if rep := mustBeClean(t, db); rep.Orders != 201 {
		t.Errorf("audited %d orders, want 201", rep.Orders)
	}
}

func TestSeedRefusesWhatItCannotWrite(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		opts bench.SeedOptions
	}{
		{"no orders", bench.SeedOptions{Orders: 0, Users: 10, Chunk: 20}},
		{"a count that splits the pattern", bench.SeedOptions{Orders: 30, Users: 10, Chunk: 20}},
		{"one user, who would trade with themselves", bench.SeedOptions{Orders: 20, Users: 1, Chunk: 20}},
		{"a chunk that splits the pattern", bench.SeedOptions{Orders: 40, Users: 10, Chunk: 10}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The options are checked before the database is used.
			if _, err := bench.Seed(context.Background(), nil, c.opts); err == nil {
				t.Errorf("Seed(%+v) did not fail", c.opts)
			}
		})
	}
}

func TestSeedRefusesToCompleteOrdersItDidNotWrite(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	seed(t, db, bench.SeedOptions{Orders: 40, Users: 10, Chunk: 40})
	// One more order carrying the seed's tag breaks the prefix.
	if _, err := db.Exec(context.Background(), `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity, status,
		                    time_in_force, idempotency_key, request_hash)
		VALUES (1, 101, 'BUY', 'MARKET', NULL, 1, 1, 'CREATED', 'IOC', 'scale-seed-999', 'h')`); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.Seed(context.Background(), db, bench.SeedOptions{Orders: 80, Users: 10, Chunk: 40}); !errors.Is(err, bench.ErrSeedMismatch) {
		t.Errorf("Seed = %v, want ErrSeedMismatch", err)
	}
}
