-- name: LockInstrument :one
-- Serialises matching, cancels and halts per instrument: whoever changes the book holds
-- this row lock until its transaction ends. Returns the instrument, whose status says
-- whether it may trade.
SELECT * FROM instruments WHERE id = @id FOR UPDATE;

-- name: SetInstrumentStatus :one
-- Halts or resumes an instrument. The update waits for the instrument's row lock, so it
-- takes effect between two matches, never inside one.
UPDATE instruments SET status = @status WHERE id = @id RETURNING *;

-- name: ListBook :many
-- One page of one side of an instrument's book in price-time priority, after the keyset
-- cursor (@after_key, @after_seq), up to the priority key @max_key. The priority key is
-- the price for sells and the negated price for buys (orders_book_idx, whose expression
-- this must repeat), so "better first" is ascending on both sides; the keys are text so
-- that a cursor can start at '-Infinity' and a MARKET order can take up to 'Infinity'.
-- No row locks: the caller holds the instrument's lock, and the update of the rows that
-- trade checks the versions read here.
SELECT id, user_id, price, remaining_quantity, version, status, book_seq,
       (CASE WHEN side = 'BUY' THEN -price ELSE price END)::text AS priority_key
FROM orders
WHERE instrument_id = @instrument_id AND side = @side AND on_book
  AND (CASE WHEN side = 'BUY' THEN -price ELSE price END) <= (@max_key::text)::numeric
  AND ((CASE WHEN side = 'BUY' THEN -price ELSE price END), book_seq)
      > ((@after_key::text)::numeric, @after_seq::bigint)
ORDER BY (CASE WHEN side = 'BUY' THEN -price ELSE price END), book_seq
LIMIT @max_rows;

-- name: ApplyChanges :many
-- The one statement that changes orders.status. In one round trip it applies a set of
-- status changes, each checked against the version it was read at, the trades of a
-- match, the events recording all of it, and the notices owed to the runs of resting
-- orders whose status a fill changed. The arrays of each group are parallel.
--
-- An empty reason keeps the order's. A change whose order moved on (another version) is left out, and so is nothing else:
-- the caller compares the rows returned with the changes it asked for and rolls the
-- whole transaction back on a difference. Events get the next seqs of their order, in
-- array order; an event naming an order in @event_trade_with gets the id of the trade
-- with that (resting) order, which is unique in one match, in its details. A change with
-- assign_seq draws the order's book sequence: its time priority, taken under the
-- instrument's lock.
WITH change AS (
    -- Set-returning functions in one select list advance together: one row per element.
    SELECT unnest(@order_ids::bigint[]) AS order_id, unnest(@versions::bigint[]) AS version,
           unnest(@statuses::text[]) AS status, unnest(@remainings::bigint[]) AS remaining,
           unnest(@reasons::text[]) AS reason, unnest(@on_books::boolean[]) AS on_book,
           unnest(@assign_seqs::boolean[]) AS assign_seq
), updated AS (
    UPDATE orders o
    SET status = c.status, remaining_quantity = c.remaining, reason = coalesce(NULLIF(c.reason, ''), o.reason),
        on_book = c.on_book, version = o.version + 1, updated_at = now(),
        book_seq = CASE WHEN c.assign_seq THEN nextval('order_book_seq') ELSE o.book_seq END
    FROM change c
    WHERE o.id = c.order_id AND o.version = c.version
    RETURNING o.*
), trade_input AS (
    SELECT generate_series(1, cardinality(@trade_buy_ids::bigint[])) AS ord,
           unnest(@trade_buy_ids::bigint[]) AS buy_id, unnest(@trade_sell_ids::bigint[]) AS sell_id,
           unnest(@trade_prices::text[]) AS price, unnest(@trade_quantities::bigint[]) AS quantity
), trade AS (
    INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity)
    SELECT @instrument_id::bigint, t.buy_id, t.sell_id, @aggressor_side::text, t.price::numeric, t.quantity
    FROM trade_input t
    ORDER BY t.ord
    RETURNING id, buy_order_id, sell_order_id
), event_input AS (
    SELECT generate_series(1, cardinality(@event_order_ids::bigint[])) AS ord,
           unnest(@event_order_ids::bigint[]) AS order_id, unnest(@event_types::text[]) AS event_type,
           unnest(@event_from::text[]) AS from_status, unnest(@event_to::text[]) AS to_status,
           unnest(@event_details::text[]) AS details, unnest(@event_trade_with::bigint[]) AS trade_with
), event AS (
    INSERT INTO order_events (order_id, seq, event_type, from_status, to_status, details)
    SELECT e.order_id,
           coalesce((SELECT max(x.seq) FROM order_events x WHERE x.order_id = e.order_id), 0)
               + row_number() OVER (PARTITION BY e.order_id ORDER BY e.ord),
           e.event_type, NULLIF(e.from_status, ''), e.to_status,
           e.details::jsonb || CASE WHEN t.id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('tradeId', t.id) END
    FROM event_input e
    -- Only for orders the update reached: an order that changed meanwhile may have new
    -- events this statement's snapshot does not show, whose seqs these would repeat.
    JOIN updated u ON u.id = e.order_id
    LEFT JOIN trade t ON e.trade_with <> 0 AND e.trade_with IN (t.buy_order_id, t.sell_order_id)
    ORDER BY e.ord
), notice AS (
    INSERT INTO fill_notices (aggressor_id, order_id, status)
    SELECT @aggressor_id::bigint, unnest(@notice_order_ids::bigint[]), unnest(@notice_statuses::text[])
)
SELECT * FROM updated;

-- name: ClaimFillNotices :many
-- Claims up to @max_rows unclaimed (or expired) notices, oldest first, of aggressor
-- @aggressor_id or (NULL) of any, until @lease_seconds from now; SKIP LOCKED lets several
-- senders claim side by side. Each comes with its order's run key, which names the run
-- to tell.
WITH claimed AS (
    UPDATE fill_notices SET claimed_until = now() + make_interval(secs => @lease_seconds::float8)
    WHERE id IN (SELECT n.id FROM fill_notices n
                 WHERE n.claimed_until <= now()
                   AND (sqlc.narg(aggressor_id)::bigint IS NULL OR n.aggressor_id = sqlc.narg(aggressor_id))
                 ORDER BY n.id LIMIT @max_rows FOR UPDATE SKIP LOCKED)
    RETURNING *
)
SELECT c.id, c.order_id, c.status, o.run_key
FROM claimed c JOIN orders o ON o.id = c.order_id
ORDER BY c.id;

-- name: DeleteFillNotices :exec
DELETE FROM fill_notices WHERE id = ANY(@ids::bigint[]);

-- name: GetBookDepth :many
-- One side of an instrument's book aggregated by price level, best first, at most
-- max_levels levels: an ordered scan of orders_book_idx (the priority expression is the
-- index's), grouped as it goes, so it stops after max_levels.
SELECT price::numeric AS price, sum(remaining_quantity)::bigint AS quantity, count(*)::bigint AS orders
FROM orders
WHERE instrument_id = @instrument_id AND side = @side AND on_book
GROUP BY (CASE WHEN side = 'BUY' THEN -price ELSE price END), price
ORDER BY (CASE WHEN side = 'BUY' THEN -price ELSE price END)
LIMIT @max_levels;
