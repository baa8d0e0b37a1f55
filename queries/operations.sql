-- name: MarkStalled :one
-- Parks an order: takes the row lock (so the EXECUTION_STALLED event written next in the
-- same transaction gets the next seq) without changing its status.
UPDATE orders SET needs_attention = true, last_error = @last_error, stalled_step = @stalled_step,
    version = version + 1, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: ClearStalled :one
-- Unparks an order when an operator decides; returns no row if it was not parked.
UPDATE orders SET needs_attention = false, version = version + 1, updated_at = now()
WHERE id = @id AND needs_attention
RETURNING *;

-- name: ListStuckOrders :many
-- Parked orders, and orders that are neither terminal nor resting on the book and have
-- not changed since @since (resting orders wait for fills by design). @waiting_statuses
-- are the statuses before matching (order.PreMatchStatuses()).
SELECT * FROM orders
WHERE needs_attention
   OR (status = ANY(@waiting_statuses::text[]) AND updated_at < @since::timestamptz)
ORDER BY updated_at
LIMIT @max_rows;

-- name: CountParkedOrders :one
SELECT count(*) FROM orders WHERE needs_attention;

-- name: CountOutbox :one
SELECT count(*) FROM outbox;

-- name: ListOpenOrdersByID :many
-- The orders among @ids that have not ended (the reconciler's candidates).
SELECT * FROM orders
WHERE id = ANY(@ids::bigint[]) AND NOT (status = ANY(@terminal_statuses::text[]))
ORDER BY id;

-- name: ListOpenOrdersAfter :many
-- One page, by id after @after_id, of the orders that have not ended (a reconcile of all
-- of them, after a restore).
SELECT * FROM orders
WHERE id > @after_id AND NOT (status = ANY(@terminal_statuses::text[]))
ORDER BY id
LIMIT @max_rows;

-- name: ListOrderRunKeys :many
-- The run keys of the orders among @ids that exist (the reconciler's check of running
-- runs after a restore).
SELECT id, run_key FROM orders WHERE id = ANY(@ids::bigint[]);
