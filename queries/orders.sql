-- name: InsertOrder :one
-- Returns the new order, or no row when (user_id, idempotency_key) already exists. It
-- writes an order as the releases before run keys did (run_key ''), for tests.
INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
                    status, time_in_force, idempotency_key, request_hash)
VALUES (@user_id, @instrument_id, @side, @kind, @price, @quantity, @quantity,
        'CREATED', @time_in_force, @idempotency_key, @request_hash)
ON CONFLICT (user_id, idempotency_key) DO NOTHING
RETURNING *;

-- name: PlaceOrders :many
-- Writes new orders, each with its ORDER_PLACED event (seq 1) and the outbox message that
-- starts its execution, in one statement: one round trip for the whole batch (the placer
-- then stores the orders' answers in the same transaction). The arrays are parallel, one
-- element per order, and must not repeat a (user_id, idempotency_key) pair. Orders get
-- their ids in array order. An empty price is a MARKET order's NULL, an empty client
-- order id none,
-- an empty expire_at none (RFC 3339 text otherwise). The message is built here because only here is the order's id known; it
-- must decode to what kafka.ExecutionMessage encodes. seq 1 needs no lock: no one else
-- can see an order before it commits. Returns the orders written; an order whose
-- (user_id, idempotency_key) or (user_id, client_order_id) already exists gets no row,
-- and nothing of it is written. Neither does one whose key another transaction is placing
-- right now: each key's transaction-level advisory lock (class idempotency_lock_class,
-- the key's hash) is tried, never waited for, and held until the commit, so the caller can
-- answer "in flight" instead of blocking behind the other request. It does not NOTIFY the
-- relay (schema 0003 says why); the API wakes it once the transaction has committed.
WITH input AS (
    -- Set-returning functions in one select list advance together, so each row is one
    -- element of every array, and ord numbers them in array order.
    SELECT generate_series(1, cardinality(@user_ids::bigint[])) AS ord,
           unnest(@user_ids::bigint[]) AS user_id,
           unnest(@instrument_ids::bigint[]) AS instrument_id,
           unnest(@sides::text[]) AS side,
           unnest(@kinds::text[]) AS kind,
           unnest(@prices::text[]) AS price,
           unnest(@quantities::bigint[]) AS quantity,
           unnest(@time_in_forces::text[]) AS time_in_force,
           unnest(@idempotency_keys::text[]) AS idempotency_key,
           unnest(@request_hashes::text[]) AS request_hash,
           unnest(@event_details::text[]) AS event_details,
           unnest(@client_order_ids::text[]) AS client_order_id,
           unnest(@expire_ats::text[]) AS expire_at
), claimed AS (
    -- A volatile function keeps this CTE from being folded into the insert: each lock is
    -- tried exactly once.
    SELECT * FROM input
    WHERE pg_try_advisory_xact_lock(@idempotency_lock_class::integer, hashtext(user_id::text || ' ' || idempotency_key))
      -- The client order id too, so that batches never wait for (or deadlock on) each
      -- other's uncommitted entries in its unique index.
      AND (client_order_id = '' OR
           pg_try_advisory_xact_lock(@client_order_lock_class::integer, hashtext(user_id::text || ' ' || client_order_id)))
), placed AS (
    -- run_key: 48 random bits (the first twelve hex digits of a version 4 UUID are
    -- random), see schema 0007.
    INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
                        status, time_in_force, idempotency_key, request_hash, run_key, client_order_id, expire_at)
    SELECT user_id, instrument_id, side, kind, NULLIF(price, '')::numeric, quantity, quantity,
           'CREATED', time_in_force, idempotency_key, request_hash,
           replace(left(gen_random_uuid()::text, 13), '-', ''), NULLIF(client_order_id, ''),
           NULLIF(expire_at, '')::timestamptz
    FROM claimed
    ORDER BY ord
    -- Any unique conflict: the idempotency key's, or the client order id's (the caller
    -- tells them apart).
    ON CONFLICT DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO order_events (order_id, seq, event_type, to_status, details)
    SELECT p.id, 1, @event_type::text, p.status, i.event_details::jsonb
    FROM placed p JOIN input i ON i.user_id = p.user_id AND i.idempotency_key = p.idempotency_key
), message AS (
    INSERT INTO outbox (topic, key, payload)
    SELECT @topic::text, p.id::text,
           jsonb_build_object('orderId', p.id, 'userId', p.user_id, 'instrumentId', p.instrument_id,
                              'orderType', p.side, 'orderKind', p.kind, 'runKey', p.run_key)
    FROM placed p
    ORDER BY p.id -- the number: a bare id would name the output column, id::text
)
SELECT * FROM placed;

-- name: GetOrderByClientOrderID :one
SELECT * FROM orders WHERE user_id = @user_id AND client_order_id = @client_order_id::text;

-- name: GetOrderByIdempotencyKey :one
SELECT * FROM orders WHERE user_id = @user_id AND idempotency_key = @idempotency_key;

-- name: StoreIdempotentAnswers :exec
-- Keeps the first answers of orders just placed, in the transaction that placed them.
INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, order_id, status_code, headers, body, expires_at)
SELECT unnest(@user_ids::bigint[]), unnest(@idempotency_keys::text[]), unnest(@request_hashes::text[]),
       unnest(@order_ids::bigint[]), unnest(@status_codes::integer[]), unnest(@headers::jsonb[]),
       unnest(@bodies::bytea[]), now() + make_interval(secs => @ttl_seconds::float8);

-- name: GetIdempotentReplay :one
-- The order placed with the user's key, whether the key has expired, and the first
-- answer, in one snapshot: an answer commits with its order, so an order seen without
-- one was placed before answers were stored, or its answer expired and was removed. The
-- answer's expires_at decides; an order without one expires ttl_seconds after it was
-- placed.
SELECT o.id AS order_id, o.request_hash,
       coalesce(k.expires_at, o.created_at + make_interval(secs => @ttl_seconds::float8)) <= now() AS expired,
       k.status_code, k.headers, k.body
FROM orders o
LEFT JOIN idempotency_keys k ON k.user_id = o.user_id AND k.idempotency_key = o.idempotency_key
WHERE o.user_id = @user_id AND o.idempotency_key = @idempotency_key;

-- name: ReleaseIdempotencyKey :one
-- Frees an expired key of the order that used it, so that the key can place a new order:
-- the order keeps it with a suffix no client can send (keys are printable ASCII), and
-- its stored answer goes. It releases nothing unless the order still has the key and the
-- key has expired.
WITH released AS (
    UPDATE orders o SET idempotency_key = o.idempotency_key || E'\n' || o.id::text
    WHERE o.id = @order_id AND o.idempotency_key = @used_key::text
      AND coalesce((SELECT k.expires_at FROM idempotency_keys k
                    WHERE k.user_id = o.user_id AND k.idempotency_key = o.idempotency_key),
                   o.created_at + make_interval(secs => @ttl_seconds::float8)) <= now()
    RETURNING o.user_id, o.id
), forgotten AS (
    DELETE FROM idempotency_keys k USING released r
    WHERE k.user_id = r.user_id AND k.order_id = r.id
)
SELECT count(*) AS released FROM released;

-- name: DeleteExpiredIdempotentAnswers :execrows
-- Removes up to max_rows answers of expired keys, the first to expire first.
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= now()
               ORDER BY expires_at LIMIT @max_rows::integer);

-- name: GetOrder :one
SELECT * FROM orders WHERE id = @id;

-- name: GetOrderForUpdate :one
SELECT * FROM orders WHERE id = @id FOR UPDATE;

-- name: ListOrders :many
-- Filters are optional (NULL means any). The sort column and direction are chosen from a
-- fixed set so the query stays one prepared statement.
SELECT * FROM orders
WHERE (sqlc.narg(user_id)::bigint IS NULL OR user_id = sqlc.narg(user_id))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(instrument_id)::bigint IS NULL OR instrument_id = sqlc.narg(instrument_id))
ORDER BY
  CASE WHEN @sort_key::text = 'id' AND @sort_desc::boolean THEN id END DESC,
  CASE WHEN @sort_key::text = 'id' AND NOT @sort_desc::boolean THEN id END ASC,
  CASE WHEN @sort_key::text = 'createdAt' AND @sort_desc::boolean THEN created_at END DESC,
  CASE WHEN @sort_key::text = 'createdAt' AND NOT @sort_desc::boolean THEN created_at END ASC,
  CASE WHEN @sort_key::text = 'updatedAt' AND @sort_desc::boolean THEN updated_at END DESC,
  CASE WHEN @sort_key::text = 'updatedAt' AND NOT @sort_desc::boolean THEN updated_at END ASC,
  CASE WHEN @sort_key::text = 'price' AND @sort_desc::boolean THEN price END DESC,
  CASE WHEN @sort_key::text = 'price' AND NOT @sort_desc::boolean THEN price END ASC,
  CASE WHEN @sort_key::text = 'quantity' AND @sort_desc::boolean THEN quantity END DESC,
  CASE WHEN @sort_key::text = 'quantity' AND NOT @sort_desc::boolean THEN quantity END ASC,
  CASE WHEN @sort_key::text = 'status' AND @sort_desc::boolean THEN status END DESC,
  CASE WHEN @sort_key::text = 'status' AND NOT @sort_desc::boolean THEN status END ASC,
  id DESC
LIMIT @page_size OFFSET @page_offset;

-- name: CountOrders :one
SELECT count(*) FROM orders
WHERE (sqlc.narg(user_id)::bigint IS NULL OR user_id = sqlc.narg(user_id))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(instrument_id)::bigint IS NULL OR instrument_id = sqlc.narg(instrument_id));

-- name: MarkCancelRequested :one
-- Records a cancel request and takes the order off the book at once, so it never trades
-- again as a resting order, even before its run applies the cancel. Takes the order's row
-- lock, so the CANCEL_REQUESTED event written next in the same transaction gets the next
-- seq without racing a status change. Returns no row for an order that is terminal
-- (@terminal_statuses: order.TerminalStatuses()).
UPDATE orders SET cancel_requested = true, on_book = false, version = version + 1, updated_at = now()
WHERE id = @id AND NOT status = ANY(@terminal_statuses::text[])
RETURNING *;

-- name: ListOpenOrdersOfUser :many
-- The user's open orders, optionally of one instrument and side (NULL: any), at most
-- max_orders of them (orders_open_by_user_idx): those with no cancel requested first,
-- then the oldest.
SELECT * FROM orders
WHERE user_id = @user_id
  AND status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR', 'EXECUTING', 'PARTIALLY_FILLED')
  AND (sqlc.narg(instrument_id)::bigint IS NULL OR instrument_id = sqlc.narg(instrument_id))
  AND (sqlc.narg(side)::text IS NULL OR side = sqlc.narg(side))
ORDER BY cancel_requested, id
LIMIT @max_orders;

-- name: ExpiryDue :one
-- Whether order id's expiry has come, by the database's clock.
SELECT coalesce(expire_at <= now(), false)::boolean FROM orders WHERE id = @id;
