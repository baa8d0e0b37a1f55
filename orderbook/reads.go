package orderbook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Events returns order id's timeline, oldest first, or ErrNotFound. Every order has its
// ORDER_PLACED event, so only an empty timeline needs the order looked up.
func (s *Service) Events(ctx context.Context, id int64) ([]queries.OrderEvent, error) {
	ev, err := s.q.ListOrderEvents(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list events of order %d: %w", id, err)
	}
	if len(ev) == 0 {
		if _, err := s.Order(ctx, id); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// OrderByClientOrderID returns the user's order with the client order id, or
// ErrNotFound.
func (s *Service) OrderByClientOrderID(ctx context.Context, user int64, clientOrderID string) (queries.Order, error) {
	o, err := s.q.GetOrderByClientOrderID(ctx, queries.GetOrderByClientOrderIDParams{UserID: user, ClientOrderID: clientOrderID})
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Order{}, ErrNotFound
	}
	if err != nil {
		return queries.Order{}, fmt.Errorf("order by client order id: %w", err)
	}
	return o, nil
}

// UserOpenOrders returns up to max of user's open orders of instrument and side if not
// nil: those with no cancel requested first, then the oldest.
func (s *Service) UserOpenOrders(ctx context.Context, user int64, instrument *int64, side *order.Side, max int) ([]queries.Order, error) {
	arg := queries.ListOpenOrdersOfUserParams{UserID: user, InstrumentID: instrument, MaxOrders: int32(max)}
	if side != nil {
		sd := string(*side)
		arg.Side = &sd
	}
	orders, err := s.q.ListOpenOrdersOfUser(ctx, arg)
	if err != nil {
		return nil, fmt.Errorf("list open orders of user %d: %w", user, err)
	}
	return orders, nil
}

// AvgFillPriceScale is the decimal places an average fill price is rounded to: the
// finest price an order may have.
const AvgFillPriceScale = 8

// AvgFillPrices returns the average price each of orders traded at (the trades' total
// price × quantity over their quantity, rounded half away from zero to
// AvgFillPriceScale places), for those that traded; orders that did not are left out
// without a read.
func (s *Service) AvgFillPrices(ctx context.Context, orders ...queries.Order) (map[int64]decimal.Decimal, error) {
	var ids []int64
	for _, o := range orders {
		if o.RemainingQuantity < o.Quantity {
			ids = append(ids, o.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.q.FillTotals(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("fill totals of %d orders: %w", len(ids), err)
	}
	avg := make(map[int64]decimal.Decimal, len(rows))
	for _, r := range rows {
		if r.Quantity > 0 {
			avg[r.OrderID] = r.Notional.DivRound(decimal.NewFromInt(r.Quantity), AvgFillPriceScale)
		}
	}
	return avg, nil
}

// Trades returns the trades of order id, oldest first, or ErrNotFound; only an order
// without trades needs the order looked up.
func (s *Service) Trades(ctx context.Context, id int64) ([]queries.Trade, error) {
	tr, err := s.q.ListOrderTrades(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list trades of order %d: %w", id, err)
	}
	if len(tr) == 0 {
		if _, err := s.Order(ctx, id); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// Stuck lists, oldest change first, at most max orders that need an operator: the
// parked ones, and those that have not reached matching and have not changed since
// before olderThan.
func (s *Service) Stuck(ctx context.Context, olderThan time.Duration, max int32) ([]queries.Order, error) {
	rows, err := s.q.ListStuckOrders(ctx, queries.ListStuckOrdersParams{
		Since: time.Now().Add(-olderThan), MaxRows: max, WaitingStatuses: order.Names(order.PreMatchStatuses()),
	})
	if err != nil {
		return nil, fmt.Errorf("list stuck orders: %w", err)
	}
	return rows, nil
}

// SortKey is a column the order list may be sorted by.
type SortKey string

// The sort keys. Each is served by an index on (column, id), id breaking ties in the
// same direction, so a page of any sort reads its rows in index order.
const (
	SortID                SortKey = "id"
	SortCreatedAt         SortKey = "created_at"
	SortUpdatedAt         SortKey = "updated_at"
	SortUserID            SortKey = "user_id"
	SortInstrumentID      SortKey = "instrument_id"
	SortSide              SortKey = "side"
	SortKind              SortKey = "kind"
	SortPrice             SortKey = "price"
	SortQuantity          SortKey = "quantity"
	SortRemainingQuantity SortKey = "remaining_quantity"
	SortStatus            SortKey = "status"
)

// sortKeys are the keys ListOrders accepts; the SQL is built only from these.
var sortKeys = map[SortKey]bool{
	SortID: true, SortCreatedAt: true, SortUpdatedAt: true, SortUserID: true, SortInstrumentID: true,
	SortSide: true, SortKind: true, SortPrice: true, SortQuantity: true, SortRemainingQuantity: true, SortStatus: true,
}

// ListQuery selects and orders a page of orders. Nil filters match any order.
type ListQuery struct {
	UserID       *int64
	InstrumentID *int64
	Status       *order.Status
	Sort         SortKey
	Desc         bool
	Limit        int32
	Offset       int64
}

// OrderPage is one page of orders and how many orders match the query in all, read from
// one snapshot, so the total always agrees with the page.
type OrderPage struct {
	Orders []queries.Order
	Total  int64
}

// ListOrders returns a page of the orders matching lq. The total of an unfiltered list
// comes from order_counts (schema 0005), which a trigger keeps, not from counting a
// million rows.
func (s *Service) ListOrders(ctx context.Context, lq ListQuery) (OrderPage, error) {
	if !sortKeys[lq.Sort] {
		return OrderPage{}, fmt.Errorf("list orders: unknown sort key %q", lq.Sort)
	}
	where, args := listFilter(lq)
	dir := "ASC"
	if lq.Desc {
		dir = "DESC"
	}
	listSQL := fmt.Sprintf(`SELECT * FROM orders %s ORDER BY %s %s, id %s LIMIT %d OFFSET %d`,
		where, lq.Sort, dir, dir, lq.Limit, lq.Offset)
	countSQL := `SELECT count(*) FROM orders ` + where
	unfiltered := len(args) == 0
	if unfiltered {
		countSQL = `SELECT coalesce(sum(n), 0)::bigint, count(*) FROM order_counts`
	}

	var page OrderPage
	var deltas int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, countSQL, args...)
		var err error
		if unfiltered {
			err = row.Scan(&page.Total, &deltas)
		} else {
			err = row.Scan(&page.Total)
		}
		if err != nil {
			return fmt.Errorf("count orders: %w", err)
		}
		rows, err := tx.Query(ctx, listSQL, args...)
		if err != nil {
			return fmt.Errorf("list orders: %w", err)
		}
		page.Orders, err = pgx.CollectRows(rows, pgx.RowToStructByPos[queries.Order])
		if err != nil {
			return fmt.Errorf("list orders: %w", err)
		}
		return nil
	})
	if err != nil {
		return OrderPage{}, err
	}
	if deltas > maxCountDeltas {
		s.counts.compact(s)
	}
	return page, nil
}

// ListOrdersByID returns up to lq.Limit orders matching lq's filters, by id (newest
// first if lq.Desc), after afterID if not nil: a keyset page. Each page reads the primary
// key (or a filter's (column, id) index) from where the last one ended, so orders placed
// meanwhile never shift a page: none already listed comes again and none that existed
// when the walk began is skipped. lq's Sort and Offset are ignored.
func (s *Service) ListOrdersByID(ctx context.Context, lq ListQuery, afterID *int64) ([]queries.Order, error) {
	where, args := listFilter(lq)
	dir, cmp := "ASC", ">"
	if lq.Desc {
		dir, cmp = "DESC", "<"
	}
	if afterID != nil {
		args = append(args, *afterID)
		cond := fmt.Sprintf("id %s $%d", cmp, len(args))
		if where == "" {
			where = "WHERE " + cond
		} else {
			where += " AND " + cond
		}
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT * FROM orders %s ORDER BY id %s LIMIT %d`, where, dir, lq.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("list orders by id: %w", err)
	}
	orders, err := pgx.CollectRows(rows, pgx.RowToStructByPos[queries.Order])
	if err != nil {
		return nil, fmt.Errorf("list orders by id: %w", err)
	}
	return orders, nil
}

// listFilter is lq's WHERE clause and its arguments.
func listFilter(lq ListQuery) (string, []any) {
	var conds []string
	var args []any
	add := func(column string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf("%s = $%d", column, len(args)))
	}
	if lq.UserID != nil {
		add("user_id", *lq.UserID)
	}
	if lq.InstrumentID != nil {
		add("instrument_id", *lq.InstrumentID)
	}
	if lq.Status != nil {
		add("status", string(*lq.Status))
	}
	if len(conds) == 0 {
		return "", nil
	}
	where := "WHERE " + conds[0]
	for _, c := range conds[1:] {
		where += " AND " + c
	}
	return where, args
}

// maxCountDeltas is how many rows order_counts may gather (one per statement that placed
// orders) before a list folds them into one.
const maxCountDeltas = 1000

// FoldOrderCounts folds order_counts into one row. One statement: readers see the rows
// before it or the one row after it, never a mix, and rows added meanwhile are not in
// its snapshot, so they stay; two folds at once wait for each other's rows and each sums
// only what it deleted.
func (s *Service) FoldOrderCounts(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `
		WITH folded AS (DELETE FROM order_counts RETURNING n)
		INSERT INTO order_counts (n) SELECT coalesce(sum(n), 0) FROM folded`); err != nil {
		return fmt.Errorf("fold order counts: %w", err)
	}
	return nil
}

// FoldOrderCountsEvery folds order_counts every interval until ctx ends, so that the
// rows stay few however long no one lists the orders; a failed fold is logged and tried
// again at the next tick.
func (s *Service) FoldOrderCountsEvery(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.FoldOrderCounts(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("order counts not folded", "error", err)
			}
		}
	}
}

// countCompactor runs one fold at a time in the background of the list that noticed it
// was due.
type countCompactor struct {
	mu      sync.Mutex
	running bool
}

func (c *countCompactor) compact(s *Service) {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	go func() {
		defer func() {
			c.mu.Lock()
			c.running = false
			c.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.FoldOrderCounts(ctx); err != nil {
			s.log.Warn("order counts not folded", "error", err)
		}
	}()
}

// OpenOrders returns the orders among ids that have not ended, by id.
func (s *Service) OpenOrders(ctx context.Context, ids []int64) ([]queries.Order, error) {
	rows, err := s.q.ListOpenOrdersByID(ctx, queries.ListOpenOrdersByIDParams{Ids: ids, TerminalStatuses: order.Names(order.TerminalStatuses())})
	if err != nil {
		return nil, fmt.Errorf("list open orders: %w", err)
	}
	return rows, nil
}

// OpenOrdersAfter returns up to max orders that have not ended, by id after afterID.
func (s *Service) OpenOrdersAfter(ctx context.Context, afterID int64, max int32) ([]queries.Order, error) {
	rows, err := s.q.ListOpenOrdersAfter(ctx, queries.ListOpenOrdersAfterParams{
		AfterID: afterID, MaxRows: max, TerminalStatuses: order.Names(order.TerminalStatuses()),
	})
	if err != nil {
		return nil, fmt.Errorf("list open orders after %d: %w", afterID, err)
	}
	return rows, nil
}

// RunKeys returns the run key of each order among ids that exists.
func (s *Service) RunKeys(ctx context.Context, ids []int64) (map[int64]string, error) {
	rows, err := s.q.ListOrderRunKeys(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list run keys: %w", err)
	}
	keys := make(map[int64]string, len(rows))
	for _, r := range rows {
		keys[r.ID] = r.RunKey
	}
	return keys, nil
}
