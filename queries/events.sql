-- name: InsertOrderEvent :one
-- Callers first update (and so lock) the order's row in the same transaction, which makes
-- the next seq free of races; UNIQUE (order_id, seq) backs that up.
INSERT INTO order_events (order_id, seq, event_type, from_status, to_status, details)
VALUES (@order_id,
        (SELECT coalesce(max(seq), 0) + 1 FROM order_events WHERE order_id = @order_id),
        @event_type, sqlc.narg(from_status), @to_status, @details)
RETURNING *;

-- name: ListOrderEvents :many
SELECT * FROM order_events WHERE order_id = @order_id ORDER BY seq;

-- name: InsertOutbox :exec
INSERT INTO outbox (topic, key, payload) VALUES (@topic, @key, @payload);

-- name: ClaimOutbox :many
-- Claims the oldest messages; SKIP LOCKED lets several relays run side by side. The
-- rows are deleted when the claiming transaction commits after the publish succeeded.
DELETE FROM outbox
WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT @max_messages FOR UPDATE SKIP LOCKED)
RETURNING *;
