-- The live event stream's reads (package eventstream). A position is (xact, id): the
-- event's inserting transaction and its id (schema 0016).

-- name: StreamHorizon :one
-- The xmin of this statement's snapshot: every transaction below it has ended, so every
-- event that will ever have a smaller xact is already visible. A stream that starts
-- "now" starts here.
SELECT pg_snapshot_xmin(pg_current_snapshot())::xid8 AS xmin;

-- name: ReadEventStream :many
-- The events after (@after_xact, @after_id) whose transactions are below the snapshot's
-- xmin, in stream order, with their orders' users: a page the stream can emit knowing
-- that no event will later commit before its end.
SELECT sqlc.embed(e), o.user_id
FROM order_events e JOIN orders o ON o.id = e.order_id
WHERE (e.xact, e.id) > (@after_xact::xid8, @after_id::bigint)
  AND e.xact < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.xact, e.id
LIMIT @max_rows;

-- name: EventsHeldBack :one
-- Whether committed events exist at or above the snapshot's xmin: held back behind an
-- older transaction still open, so ReadEventStream cannot emit them yet. Run in the
-- same snapshot as that read (one REPEATABLE READ transaction).
SELECT EXISTS (SELECT 1 FROM order_events WHERE xact >= pg_snapshot_xmin(pg_current_snapshot()));

-- name: GetEventPosition :one
-- Where event @id is in the stream, and whose it is: a reconnecting client's
-- Last-Event-ID.
SELECT e.xact, e.order_id, o.user_id
FROM order_events e JOIN orders o ON o.id = e.order_id
WHERE e.id = @id;

-- name: ReplayUserEvents :many
-- User @user_id's events after (@after_xact, @after_id) up to and including
-- (@upto_xact, @upto_id), in stream order: what a reconnecting client missed.
SELECT sqlc.embed(e), o.user_id
FROM order_events e JOIN orders o ON o.id = e.order_id
WHERE o.user_id = @user_id
  AND (e.xact, e.id) > (@after_xact::xid8, @after_id::bigint)
  AND (e.xact, e.id) <= (@upto_xact::xid8, @upto_id::bigint)
ORDER BY e.xact, e.id
LIMIT @max_rows;

-- name: ReplayOrderEvents :many
-- Order @order_id's events in the same range, likewise.
SELECT sqlc.embed(e), o.user_id
FROM order_events e JOIN orders o ON o.id = e.order_id
WHERE e.order_id = @order_id
  AND (e.xact, e.id) > (@after_xact::xid8, @after_id::bigint)
  AND (e.xact, e.id) <= (@upto_xact::xid8, @upto_id::bigint)
ORDER BY e.xact, e.id
LIMIT @max_rows;
