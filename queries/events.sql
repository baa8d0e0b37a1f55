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
-- Claims the oldest unclaimed (or expired) messages until @lease_seconds from now, in a
-- statement of its own; SKIP LOCKED lets several relays claim side by side. The rows are
-- deleted (DeleteOutbox) once Kafka has them, or released (ReleaseOutbox) when the
-- publish failed.
UPDATE outbox SET claimed_until = now() + make_interval(secs => @lease_seconds::float8)
WHERE id IN (SELECT o.id FROM outbox o WHERE o.claimed_until <= now()
             ORDER BY o.id LIMIT @max_messages FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: DeleteOutbox :exec
DELETE FROM outbox WHERE id = ANY(@ids::bigint[]);

-- name: ReleaseOutbox :exec
UPDATE outbox SET claimed_until = '-infinity' WHERE id = ANY(@ids::bigint[]);
