package orderbook_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
)

// checkStatuses returns the status names a CHECK constraint of orders lists, in order.
func (b *book) checkStatuses(constraint string) []string {
	b.t.Helper()
	var def string
	if err := b.pool.QueryRow(b.ctx, `
		SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'orders'::regclass AND conname = $1`, constraint).Scan(&def); err != nil {
		b.t.Fatalf("constraint %s: %v", constraint, err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`'([A-Z_]+)'::text`).FindAllStringSubmatch(def, -1) {
		if order.Status(m[1]).Valid() {
			names = append(names, m[1])
		}
	}
	return names
}

func TestTheSchemasStatusListsAreTheTransitionTables(t *testing.T) {
	b := newBook(t)
	resting := order.Names(order.RestingStatuses())
	cases := []struct {
		constraint string
		want       []string
	}{
		{"orders_status_check", order.Names(order.Statuses)},
		{"orders_on_book_rests", resting},
		{"orders_executed_means_filled", []string{string(order.Executed)}},
	}
	for _, c := range cases {
		t.Run(c.constraint, func(t *testing.T) {
			got := b.checkStatuses(c.constraint)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s lists %v, want %v (from the order package)", c.constraint, got, want)
			}
		})
	}
	// Every status the table knows can be stored, and no other.
	o := b.place(1, 101, order.Buy, "10", 1)
	for _, st := range order.Statuses {
		if st == order.Executed || st.Resting() {
			continue // these need a filled, or a resting, order
		}
		b.exec(`UPDATE orders SET status = $1 WHERE id = $2`, string(st), o.ID)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE orders SET status = 'EXPIRED_OR_SO' WHERE id = $1`, o.ID); err == nil {
		t.Error("the schema stored a status the order package does not know")
	}
}

func TestTheOrderListSortsByEveryKeyAndCountsWithoutScanning(t *testing.T) {
	b := newBook(t)
	// A spread of values for every sortable column.
	b.run(3, 102, order.Sell, "7", 5)
	b.run(1, 101, order.Buy, "9", 2)
	b.run(2, 103, order.Sell, "", 4)
	b.run(1, 101, order.Buy, "8", 9)
	b.run(4, 101, order.Sell, "8", 3) // trades with the 8 buy

	keys := []orderbook.SortKey{orderbook.SortID, orderbook.SortCreatedAt, orderbook.SortUpdatedAt, orderbook.SortUserID,
		orderbook.SortInstrumentID, orderbook.SortSide, orderbook.SortKind, orderbook.SortPrice, orderbook.SortQuantity,
		orderbook.SortRemainingQuantity, orderbook.SortStatus}
	for _, key := range keys {
		for _, desc := range []bool{false, true} {
			page, err := b.svc.ListOrders(b.ctx, orderbook.ListQuery{Sort: key, Desc: desc, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var want []int64
			dir := "ASC"
			if desc {
				dir = "DESC"
			}
			rows, err := b.pool.Query(b.ctx, `SELECT id FROM orders ORDER BY `+string(key)+` `+dir+`, id `+dir)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id int64
				_ = rows.Scan(&id)
				want = append(want, id)
			}
			rows.Close()
			var got []int64
			for _, o := range page.Orders {
				got = append(got, o.ID)
			}
			if !slices.Equal(got, want) || page.Total != 5 {
				t.Errorf("sort %s desc=%v: ids %v, total %d; want %v, 5", key, desc, got, page.Total, want)
			}
		}
	}
	user := int64(1)
	page, err := b.svc.ListOrders(b.ctx, orderbook.ListQuery{UserID: &user, Sort: orderbook.SortID, Limit: 1})
	if err != nil || page.Total != 2 || len(page.Orders) != 1 || page.Orders[0].UserID != 1 {
		t.Errorf("user 1's first order: %+v, %v; want one of 2", page, err)
	}
	if _, err := b.svc.ListOrders(b.ctx, orderbook.ListQuery{Sort: "id; DROP TABLE orders", Limit: 1}); err == nil {
		t.Error("ListOrders took a sort key it does not know")
	}
}

func TestTheUnfilteredTotalStaysExactWhileItsCountsAreFolded(t *testing.T) {
	b := newBook(t)
	// Many statements' worth of rows in order_counts, then one list to notice and fold them.
	b.exec(`INSERT INTO order_counts (n) SELECT 0 FROM generate_series(1, 1500)`)
	for range 3 {
		b.place(1, 101, order.Buy, "10", 1)
	}
	if page, err := b.svc.ListOrders(b.ctx, orderbook.ListQuery{Sort: orderbook.SortID, Limit: 1}); err != nil || page.Total != 3 {
		t.Fatalf("total %d, %v; want 3", page.Total, err)
	}
	deadline := b.deadline()
	for {
		var rows int
		if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM order_counts`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 1 {
			break
		}
		deadline.check("order_counts folded into one row")
	}
	b.place(1, 101, order.Buy, "10", 1)
	if page, err := b.svc.ListOrders(b.ctx, orderbook.ListQuery{Sort: orderbook.SortID, Limit: 1}); err != nil || page.Total != 4 {
		t.Errorf("total after the fold and one more order: %d, %v; want 4", page.Total, err)
	}
}
