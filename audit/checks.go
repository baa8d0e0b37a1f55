package audit

import (
	"regexp"

	"github.com/orderflow/orderflow/order"
)

// These are read-only diagnostic queries, written here rather than in queries/ (sqlc):
// each exists in two variants, for the whole database and for a set of orders, so that
// PostgreSQL plans a full scan for the one and index lookups for the other. A query
// selects its orders through {{scope}}, a condition on orders o that takes the order ids
// as $1, or {{scope:column}}, the same on another column holding an order id. Each
// check returns one row per violation: the order at fault and what is wrong. Lists that
// the order package defines (statuses, the transition table) come in as array
// parameters, never as copies.

// scope is the set of orders an audit covers, as SQL.
type scope struct {
	ids any // $1: the order ids, or NULL for every order
}

func newScope(ids []int64) scope {
	if ids == nil {
		return scope{}
	}
	return scope{ids: ids}
}

// placeholder is {{scope}} (the condition on orders o) or {{scope:column}} (the
// condition on another column holding an order id).
var placeholder = regexp.MustCompile(`\{\{scope(?::([a-z_.]+))?\}\}`)

// sql fills the query's placeholders in.
func (s scope) sql(query string) string {
	return placeholder.ReplaceAllStringFunc(query, func(m string) string {
		if s.ids == nil {
			// $1 must appear in the query for PostgreSQL to know its type; it is NULL here.
			return "$1::bigint[] IS NULL"
		}
		column := "o.id"
		if sub := placeholder.FindStringSubmatch(m); sub[1] != "" {
			column = sub[1]
		}
		return column + " = ANY($1::bigint[])"
	})
}

// check is one set-based query and its parameters.
type check struct {
	name string
	sql  string
	args []any
}

// checks returns the database checks, each with its parameters; the runs check, which
// needs Temporal too, is queued apart (queueRuns).
func (s scope) checks() []check {
	from, to, event := transitionTable()
	return []check{
		{CheckTimeline, s.sql(timelineSQL), []any{s.ids, from, to, event, annotationTypes(),
			string(order.EventOrderPlaced), string(order.Created)}},
		{CheckFills, s.sql(fillsSQL), []any{s.ids}},
		{CheckTrades, s.sql(tradesSQL), []any{s.ids}},
		{CheckBook, s.sql(bookSQL), []any{s.ids, restingStatuses()}},
		{CheckPriority, s.sql(prioritySQL), []any{s.ids}},
		{CheckIdempotency, s.sql(idempotencySQL), []any{s.ids}},
		{CheckAmendments, s.sql(amendmentsSQL), []any{s.ids, order.ReasonReplaced, string(order.EventAmended),
			order.Names([]order.Status{order.Cancelled, order.PartiallyCancelled})}},
	}
}

// countSQL counts the audited orders and their trades, for the report.
const countSQL = `
SELECT (SELECT count(*) FROM orders o WHERE {{scope}}),
       (SELECT count(*) FROM (` + scopedTrades + `) t)`

// scopedTrades selects the trades of the audited orders. Two branches, so that each can
// use the index on its side when the audit is scoped; the second one leaves out what the
// first found (and is false outright for the whole database).
const scopedTrades = `
    SELECT t.* FROM trades t WHERE {{scope:t.buy_order_id}}
    UNION ALL
    SELECT t.* FROM trades t WHERE {{scope:t.sell_order_id}} AND NOT ({{scope:t.buy_order_id}})`

// The checks below first compute, per row, one flag per rule, keep only the rows with a
// flag set, and only then spell out what is wrong: format() on every row would cost more
// than the whole scan.

// timelineSQL walks each order's events in seq order with window functions: every event
// is checked against the one before it ($2, $3, $4: the table's allowed from → to moves
// and the event type recording each; $5: the annotation types, which keep the status;
// $6, $7: the opening event and status), and the last one against the order's status.
const timelineSQL = `
WITH allowed AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[]) AS a(from_status, to_status, event_type)),
ev AS MATERIALIZED (
    SELECT e.order_id, e.seq, e.event_type, e.from_status, e.to_status,
           coalesce(e.from_status, 'none') AS shown_from,
           row_number() OVER w AS n,
           lead(e.seq) OVER w IS NULL AS last,
           lag(e.seq) OVER w AS prev_seq,
           lag(e.to_status) OVER w AS prev_status
    FROM order_events e
    WHERE {{scope:e.order_id}}
    WINDOW w AS (PARTITION BY e.order_id ORDER BY e.seq)),
flagged AS (
    SELECT ev.*,
           ev.n = 1 AND (ev.seq <> 1 OR ev.event_type <> $6::text OR ev.from_status IS NOT NULL
                         OR ev.to_status <> $7::text) AS bad_opening,
           ev.n > 1 AND ev.seq <> ev.prev_seq + 1 AS bad_seq,
           ev.n > 1 AND ev.from_status IS DISTINCT FROM ev.prev_status AS bad_from,
           ev.n > 1 AND ev.event_type = ANY($5::text[]) AND ev.to_status IS DISTINCT FROM ev.from_status AS bad_annotation,
           ev.n > 1 AND NOT ev.event_type = ANY($5::text[]) AND NOT EXISTS (
               SELECT 1 FROM allowed a
               WHERE a.from_status = ev.from_status AND a.to_status = ev.to_status AND a.event_type = ev.event_type) AS bad_move
    FROM ev)
SELECT f.order_id, p.detail
FROM flagged f CROSS JOIN LATERAL (VALUES
    (f.bad_opening, format('the timeline opens with %s (%s → %s) at seq %s; want %s (→ %s) at seq 1',
                           f.event_type, f.shown_from, f.to_status, f.seq, $6::text, $7::text)),
    (f.bad_seq, format('seq %s follows seq %s: the timeline has a gap', f.seq, f.prev_seq)),
    (f.bad_from, format('%s at seq %s starts from %s, but the event before it left the order %s',
                        f.event_type, f.seq, f.shown_from, f.prev_status)),
    (f.bad_annotation, format('%s at seq %s moves the order %s → %s; it may only annotate the timeline',
                              f.event_type, f.seq, f.shown_from, f.to_status)),
    (f.bad_move, format('%s at seq %s (%s → %s) is not a move of the transition table',
                        f.event_type, f.seq, f.shown_from, f.to_status))
) AS p(bad, detail)
WHERE (f.bad_opening OR f.bad_seq OR f.bad_from OR f.bad_annotation OR f.bad_move) AND p.bad
UNION ALL
SELECT o.id, CASE
    WHEN l.order_id IS NULL THEN 'the order has no events; its timeline must open with ' || $6::text
    ELSE format('the last event (%s at seq %s) leaves the order %s, but the order is %s',
                l.event_type, l.seq, l.to_status, o.status) END
FROM orders o LEFT JOIN ev l ON l.order_id = o.id AND l.last
WHERE {{scope:o.id}} AND (l.order_id IS NULL OR l.to_status <> o.status)`

// fillsSQL adds up each order's trades, on either side.
const fillsSQL = `
WITH filled AS (
    SELECT f.order_id, sum(f.quantity) AS quantity, count(*) AS trades FROM (
        SELECT t.buy_order_id AS order_id, t.quantity FROM trades t WHERE {{scope:t.buy_order_id}}
        UNION ALL
        SELECT t.sell_order_id, t.quantity FROM trades t WHERE {{scope:t.sell_order_id}}) f
    GROUP BY f.order_id),
flagged AS (
    SELECT o.id, o.quantity, o.remaining_quantity,
           coalesce(f.quantity, 0) AS filled, coalesce(f.trades, 0) AS trades,
           o.remaining_quantity < 0 AS bad_negative,
           o.remaining_quantity > o.quantity AS bad_excess,
           o.quantity - o.remaining_quantity <> coalesce(f.quantity, 0) AS bad_sum
    FROM orders o LEFT JOIN filled f ON f.order_id = o.id
    WHERE {{scope}})
SELECT f.id, p.detail
FROM flagged f CROSS JOIN LATERAL (VALUES
    (f.bad_negative, format('remaining quantity %s is negative', f.remaining_quantity)),
    (f.bad_excess, format('remaining quantity %s exceeds the quantity %s', f.remaining_quantity, f.quantity)),
    (f.bad_sum, format('quantity %s − remaining %s = %s filled, but its %s trade(s) add up to %s',
                       f.quantity, f.remaining_quantity, f.quantity - f.remaining_quantity, f.trades, f.filled))
) AS p(bad, detail)
WHERE (f.bad_negative OR f.bad_excess OR f.bad_sum) AND p.bad`

// tradesSQL checks every trade of the audited orders against both its orders. A
// violation names the aggressor, the order whose matching made the trade; the resting
// order is the other one, whose price the trade must have.
const tradesSQL = `
WITH pair AS (
    SELECT t.id, t.instrument_id, t.price, t.aggressor_side,
           b.id AS buy_id, b.side AS buy_side, b.kind AS buy_kind, b.price AS buy_price,
           b.user_id AS buy_user, b.instrument_id AS buy_instrument,
           s.id AS sell_id, s.side AS sell_side, s.kind AS sell_kind, s.price AS sell_price,
           s.user_id AS sell_user, s.instrument_id AS sell_instrument,
           CASE WHEN t.aggressor_side = 'SELL' THEN s.id ELSE b.id END AS aggressor_id,
           CASE WHEN t.aggressor_side = 'SELL' THEN b.id ELSE s.id END AS resting_id,
           CASE WHEN t.aggressor_side = 'SELL' THEN b.price ELSE s.price END AS resting_price
    FROM (` + scopedTrades + `) t
    JOIN orders b ON b.id = t.buy_order_id
    JOIN orders s ON s.id = t.sell_order_id),
flagged AS (
    SELECT pair.*,
           buy_side <> 'BUY' AS bad_buy_side,
           sell_side <> 'SELL' AS bad_sell_side,
           instrument_id <> buy_instrument OR instrument_id <> sell_instrument AS bad_instrument,
           buy_user = sell_user AS bad_self_trade,
           buy_kind = 'MARKET' AND sell_kind = 'MARKET' AS bad_market_pair,
           buy_kind = 'LIMIT' AND price > buy_price AS bad_buy_limit,
           sell_kind = 'LIMIT' AND price < sell_price AS bad_sell_limit,
           price IS DISTINCT FROM resting_price AS bad_price
    FROM pair)
SELECT f.aggressor_id, p.detail
FROM flagged f CROSS JOIN LATERAL (VALUES
    (f.bad_buy_side, format('trade %s: its buy order %s is a %s order', f.id, f.buy_id, f.buy_side)),
    (f.bad_sell_side, format('trade %s: its sell order %s is a %s order', f.id, f.sell_id, f.sell_side)),
    (f.bad_instrument, format('trade %s on instrument %s: buy order %s is on instrument %s and sell order %s on %s',
                              f.id, f.instrument_id, f.buy_id, f.buy_instrument, f.sell_id, f.sell_instrument)),
    (f.bad_self_trade, format('trade %s: buy order %s and sell order %s both belong to user %s',
                              f.id, f.buy_id, f.sell_id, f.buy_user)),
    (f.bad_market_pair, format('trade %s: MARKET buy order %s traded with MARKET sell order %s', f.id, f.buy_id, f.sell_id)),
    (f.bad_buy_limit, format('trade %s at %s is above buy order %s''s limit %s',
                             f.id, trim_scale(f.price), f.buy_id, trim_scale(f.buy_price))),
    (f.bad_sell_limit, format('trade %s at %s is below sell order %s''s limit %s',
                              f.id, trim_scale(f.price), f.sell_id, trim_scale(f.sell_price))),
    (f.bad_price, format('trade %s at %s is not at the resting order %s''s price %s',
                         f.id, trim_scale(f.price), f.resting_id, coalesce(trim_scale(f.resting_price)::text, 'none (MARKET)')))
) AS p(bad, detail)
WHERE (f.bad_buy_side OR f.bad_sell_side OR f.bad_instrument OR f.bad_self_trade OR f.bad_market_pair
       OR f.bad_buy_limit OR f.bad_sell_limit OR f.bad_price) AND p.bad`

// bookSQL finds, per instrument, the best bid and ask on the book (on_book); the book is
// crossed when the bid reaches the ask. The newer of the two is named, because its
// arrival should have traded. It also finds orders on the book that cannot rest there
// ($2: the resting statuses): the constraint orders_on_book_rests forbids them, so this
// checks that it is still in place. And it finds FOK orders that traded in part: a FOK
// fills entirely in its first match or not at all.
const bookSQL = `
WITH scope AS (SELECT o.* FROM orders o WHERE {{scope}}),
book AS (
    SELECT o.id, o.instrument_id, o.side, o.price, o.book_seq FROM orders o
    WHERE o.instrument_id IN (SELECT instrument_id FROM scope) AND o.on_book),
bid AS (SELECT DISTINCT ON (instrument_id) * FROM book WHERE side = 'BUY' ORDER BY instrument_id, price DESC, book_seq),
ask AS (SELECT DISTINCT ON (instrument_id) * FROM book WHERE side = 'SELL' ORDER BY instrument_id, price, book_seq)
SELECT CASE WHEN b.book_seq > a.book_seq THEN b.id ELSE a.id END,
       format('the book of instrument %s is crossed: BUY order %s rests at %s, at or above SELL order %s at %s',
              b.instrument_id, b.id, trim_scale(b.price), a.id, trim_scale(a.price))
FROM bid b JOIN ask a ON a.instrument_id = b.instrument_id
WHERE b.price >= a.price
UNION ALL
SELECT s.id, format('order is on the book, but it is a %s %s %s order, %s, with %s left%s; only GTC, DAY and GTD LIMIT orders in a resting status with quantity left, a book sequence and no cancel request rest',
                    s.status, s.time_in_force, s.kind, CASE WHEN s.cancel_requested THEN 'cancel requested' ELSE 'no cancel requested' END,
                    s.remaining_quantity, CASE WHEN s.book_seq IS NULL THEN ' and no book sequence' ELSE '' END)
FROM scope s
WHERE s.on_book AND (NOT s.status = ANY($2::text[]) OR s.kind <> 'LIMIT' OR s.time_in_force NOT IN ('GTC', 'DAY', 'GTD')
                     OR s.remaining_quantity <= 0 OR s.book_seq IS NULL OR s.cancel_requested)
UNION ALL
SELECT s.id, format('FOK order is %s with %s of %s left: a FOK fills entirely or not at all',
                    s.status, s.remaining_quantity, s.quantity)
FROM scope s
WHERE s.time_in_force = 'FOK' AND s.remaining_quantity NOT IN (0, s.quantity)`

// prioritySQL checks time priority by the book sequence, for the trades of the audited
// orders. The priority key is the price for sells and the negated price for buys, so on
// either side (key, book_seq) ascending is priority order. It reports the aggressor:
//
//   - when it took a resting order after one of lower priority (its trades, in id order,
//     must go down the book);
//   - when an order ahead of a resting order it took was on the book all along and is
//     still there: an order of another user, on the book now (an order cannot return to
//     the book), that reached matching before the aggressor and rested in its first step
//     (it never traded as an aggressor, so it cannot have been mid-sweep meanwhile).
const prioritySQL = `
WITH t AS (
    SELECT tr.id AS trade_id, tr.instrument_id,
           CASE WHEN tr.aggressor_side = 'BUY' THEN tr.buy_order_id ELSE tr.sell_order_id END AS aggressor_id,
           CASE WHEN tr.aggressor_side = 'BUY' THEN tr.sell_order_id ELSE tr.buy_order_id END AS resting_id
    FROM (` + scopedTrades + `) tr),
p AS (
    SELECT t.*, a.user_id AS a_user, a.book_seq AS a_seq, r.side AS r_side, r.price AS r_price, r.book_seq AS r_seq,
           CASE WHEN r.side = 'BUY' THEN -r.price ELSE r.price END AS r_key,
           lag(r.id) OVER w AS prev_id, lag(r.book_seq) OVER w AS prev_seq,
           lag(CASE WHEN r.side = 'BUY' THEN -r.price ELSE r.price END) OVER w AS prev_key
    FROM t JOIN orders a ON a.id = t.aggressor_id JOIN orders r ON r.id = t.resting_id
    WINDOW w AS (PARTITION BY t.aggressor_id ORDER BY t.trade_id))
SELECT p.aggressor_id,
       format('trade %s took order %s (book seq %s) after order %s (book seq %s), which comes after it in price-time priority',
              p.trade_id, p.resting_id, p.r_seq, p.prev_id, p.prev_seq)
FROM p
WHERE p.prev_id IS NOT NULL AND (p.r_key, p.r_seq) < (p.prev_key, p.prev_seq)
UNION ALL
SELECT p.aggressor_id,
       format('trade %s took order %s at %s (book seq %s) while order %s, ahead of it at %s (book seq %s), rested on the book',
              p.trade_id, p.resting_id, trim_scale(p.r_price), p.r_seq, s.id, trim_scale(s.price), s.book_seq)
FROM p CROSS JOIN LATERAL (
    SELECT o.id, o.price, o.book_seq FROM orders o
    WHERE o.instrument_id = p.instrument_id AND o.side = p.r_side AND o.on_book
      AND (CASE WHEN o.side = 'BUY' THEN -o.price ELSE o.price END, o.book_seq) < (p.r_key, p.r_seq)
      AND o.book_seq < p.a_seq AND o.user_id <> p.a_user
      AND NOT EXISTS (SELECT 1 FROM trades x
                      WHERE (x.aggressor_side = 'BUY' AND x.buy_order_id = o.id)
                         OR (x.aggressor_side = 'SELL' AND x.sell_order_id = o.id))
    ORDER BY CASE WHEN o.side = 'BUY' THEN -o.price ELSE o.price END, o.book_seq
    LIMIT 1) s`

// idempotencySQL finds the (user, key) pairs shared by several orders: for the whole
// database in one pass over the orders (UNIQUE (user_id, idempotency_key) makes this a
// check that the constraint is still there), for some orders by looking their keys up.
// Only the branch for the audit's scope runs: the other one's condition on $1 is false.
// The newest order of a pair is named, being the one that should not exist.
const idempotencySQL = `
WITH shared AS (
    SELECT o.user_id, o.idempotency_key FROM orders o
    WHERE $1::bigint[] IS NULL
    GROUP BY o.user_id, o.idempotency_key HAVING count(*) > 1
    UNION
    SELECT o.user_id, o.idempotency_key FROM orders o
    WHERE o.id = ANY($1::bigint[]) AND EXISTS (
        SELECT 1 FROM orders d
        WHERE d.user_id = o.user_id AND d.idempotency_key = o.idempotency_key AND d.id <> o.id))
SELECT max(o.id),
       format('orders %s of user %s share the Idempotency-Key %L',
              string_agg(o.id::text, ', ' ORDER BY o.id), o.user_id, o.idempotency_key)
FROM shared k JOIN orders o ON o.user_id = k.user_id AND o.idempotency_key = k.idempotency_key
GROUP BY o.user_id, o.idempotency_key`

// runsSQL lists the orders that must have a run, with their status, whether it is
// terminal ($2) and whether it has not changed since $3: not those placed after $3 (the
// grace cut-off), not those whose message
// is still in the outbox ($4: its topic; the key is the order id), and not the terminal
// ones unchanged since $5 (NULL: none), whose run Temporal may have deleted.
const runsSQL = `
SELECT o.id, o.run_key, o.status, o.status = ANY($2::text[]), o.updated_at <= $3::timestamptz
FROM orders o
WHERE {{scope}}
  AND o.created_at <= $3::timestamptz
  AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.topic = $4::text AND x.key = o.id::text)
  AND NOT (o.status = ANY($2::text[]) AND o.updated_at < coalesce($5::timestamptz, '-infinity'))`

// amendmentsSQL checks amendments ($2: the reason REPLACED; $3: the AMENDED event type;
// $4: the statuses a replaced order ends in): a replaced order has its replacement
// (orders_replaces_idx makes it at most one), a replacement names an order that was
// replaced and is like it, and an order amended in place has the quantity of its last
// AMENDED event.
const amendmentsSQL = `
SELECT o.id, 'the order ended ' || o.status || ' (' || $2::text || '), but no order replaces it'
FROM orders o
WHERE {{scope}} AND o.reason = $2::text
  AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.replaces_order_id = o.id)
UNION ALL
SELECT r.id, format('the order replaces order %s, which is %s (reason %s), %s %s on instrument %s for user %s (%s)',
                    p.id, p.status, p.reason, p.side, p.time_in_force, p.instrument_id, p.user_id,
                    'want ' || $2::text || ' and the same side, time in force, instrument and user')
FROM orders r JOIN orders p ON p.id = r.replaces_order_id
WHERE {{scope:r.id}} AND r.replaces_order_id IS NOT NULL
  AND (p.reason <> $2::text OR NOT p.status = ANY($4::text[]) OR p.user_id <> r.user_id
       OR p.instrument_id <> r.instrument_id OR p.side <> r.side OR p.time_in_force <> r.time_in_force)
UNION ALL
SELECT a.order_id, format('its last %s event set quantity %s, but the order has quantity %s', $3::text, a.quantity, o.quantity)
FROM (SELECT DISTINCT ON (e.order_id) e.order_id, (e.details->>'quantity')::bigint AS quantity
      FROM order_events e
      WHERE {{scope:e.order_id}} AND e.event_type = $3::text
      ORDER BY e.order_id, e.seq DESC) a
JOIN orders o ON o.id = a.order_id
WHERE a.quantity <> o.quantity`
