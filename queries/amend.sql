-- name: ReduceOrderQuantity :one
-- Amends a resting order to a smaller quantity in place: what it has filled stays filled,
-- its remainder shrinks by the same amount, and its book sequence (its time priority) is
-- kept. Checked against the version read under the instrument's lock; no row when the
-- order changed since.
UPDATE orders
SET quantity = @quantity, remaining_quantity = remaining_quantity - (quantity - @quantity),
    version = version + 1, updated_at = now()
WHERE id = @id AND version = @version AND @quantity::bigint > quantity - remaining_quantity
RETURNING *;

-- name: LinkReplacement :one
-- Names the order a new order replaces, in the transaction that placed it.
UPDATE orders SET replaces_order_id = @replaces_order_id WHERE id = @id AND replaces_order_id IS NULL
RETURNING *;

-- name: GetReplacement :one
-- The order that replaced order @id, if any.
SELECT * FROM orders WHERE replaces_order_id = @id;

-- name: AmendApplied :one
-- Whether the amendment @amend_id of order @order_id has been applied: its AMENDED
-- event names it.
SELECT EXISTS (SELECT 1 FROM order_events
               WHERE order_id = @order_id AND event_type = 'AMENDED' AND details->>'amendId' = @amend_id::text);
