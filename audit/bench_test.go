package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/audit"
	"github.com/orderflow/orderflow/workflows"
)

// BenchmarkRun measures whole-database and scoped audits of clean histories of several
// sizes (go test -run - -bench . ./audit/): each pair of orders is a resting LIMIT sell
// filled by a MARKET buy, five events each, one trade. Temporal is a fake here: listing
// runs from a real server costs what its visibility store costs, on top.
func BenchmarkRun(b *testing.B) {
	for _, orders := range []int{1_000, 10_000, 100_000} {
		db := benchDB(b, orders)
		runs := fakeRuns{}
		for id := range int64(orders) {
			runs[workflows.OrderWorkflowID(id+1, "")] = audit.Runs{Count: 1, Last: "Completed"}
		}
		for _, scope := range []struct {
			name string
			ids  []int64
		}{{"all", nil}, {"300 orders", ids(300)}} {
			b.Run(fmt.Sprintf("%d orders, audit %s", orders, scope.name), func(b *testing.B) {
				for b.Loop() {
					rep, err := audit.Run(context.Background(), db, runs, audit.Options{OrderIDs: scope.ids, Grace: -1})
					if err != nil || len(rep.Violations) > 0 {
						b.Fatalf("audit: %v %+v", err, rep.Violations)
					}
				}
			})
		}
	}
}

func ids(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// benchDB writes n orders (n/2 pairs) with set-based inserts.
func benchDB(b *testing.B, n int) *pgxpool.Pool {
	b.Helper()
	db := newDB(b)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO orders (id, user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
		                     status, time_in_force, idempotency_key, request_hash)
		 OVERRIDING SYSTEM VALUE
		 SELECT i, 1 + i % 2, 101, CASE WHEN i % 2 = 1 THEN 'SELL' ELSE 'BUY' END,
		        CASE WHEN i % 2 = 1 THEN 'LIMIT' ELSE 'MARKET' END,
		        CASE WHEN i % 2 = 1 THEN 100 END, 10, 0, 'EXECUTED',
		        CASE WHEN i % 2 = 1 THEN 'GTC' ELSE 'IOC' END, 'k' || i, 'h'
		 FROM generate_series(1, $1::bigint) AS i`,
		`INSERT INTO order_events (order_id, seq, event_type, from_status, to_status)
		 SELECT i, s.seq, s.event_type, s.from_status, s.to_status
		 FROM generate_series(1, $1::bigint) AS i,
		      (VALUES (1, 'ORDER_PLACED', NULL, 'CREATED'), (2, 'VALIDATED', 'CREATED', 'VALIDATED'),
		              (3, 'SENT_TO_EXECUTOR', 'VALIDATED', 'SENT_TO_EXECUTOR'),
		              (4, 'EXECUTING', 'SENT_TO_EXECUTOR', 'EXECUTING'), (5, 'EXECUTED', 'EXECUTING', 'EXECUTED'))
		          AS s(seq, event_type, from_status, to_status)`,
		`INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity)
		 SELECT 101, i + 1, i, 'BUY', 100, 10 FROM generate_series(1, $1::bigint, 2) AS i`,
	} {
		if _, err := db.Exec(ctx, q, n); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return db
}
