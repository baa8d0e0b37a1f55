-- name: ExecutionBacklog :one
-- The orders accepted and not yet executed (open, off the book, not parked: see schema
-- 0009, whose index this predicate matches), and the last order id handed out, whose
-- growth is how many orders were accepted meanwhile.
SELECT count(*)::bigint AS pending,
       (SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('orders', 'id')::regclass), 0))::bigint AS last_id
FROM orders
WHERE status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR', 'EXECUTING', 'PARTIALLY_FILLED')
  AND NOT on_book AND NOT needs_attention;
