-- name: InsertTrade :one
INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity)
VALUES (@instrument_id, @buy_order_id, @sell_order_id, @aggressor_side, @price, @quantity)
RETURNING *;

-- name: ListOrderTrades :many
SELECT * FROM trades WHERE buy_order_id = @order_id OR sell_order_id = @order_id ORDER BY id;

-- name: ListTakenCounterparties :many
-- The resting orders that an aggressor order traded with, and where they stand now.
SELECT o.id, o.status FROM trades t
JOIN orders o ON o.id = CASE WHEN t.aggressor_side = 'BUY' THEN t.sell_order_id ELSE t.buy_order_id END
WHERE (t.aggressor_side = 'BUY' AND t.buy_order_id = @order_id)
   OR (t.aggressor_side = 'SELL' AND t.sell_order_id = @order_id)
GROUP BY o.id, o.status
ORDER BY o.id;

-- name: FillTotals :many
-- The notional (sum of price × quantity) and quantity each of the orders traded, for
-- their average fill price (trades_buy_idx and trades_sell_idx).
SELECT order_id, sum(price * quantity)::numeric AS notional, sum(quantity)::bigint AS quantity
FROM (
    SELECT buy_order_id AS order_id, price, quantity FROM trades WHERE buy_order_id = ANY(@ids::bigint[])
    UNION ALL
    SELECT sell_order_id, price, quantity FROM trades WHERE sell_order_id = ANY(@ids::bigint[])
) t
GROUP BY order_id;
