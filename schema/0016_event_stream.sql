-- +goose Up
-- The live event stream (GET /api/v1/orders/events/stream) needs a position that a
-- reader can pass without ever skipping an event: ids are drawn at insert, but
-- transactions commit out of id order, so "id > last seen" misses an event whose
-- transaction commits late. xact is the inserting transaction's id. A reader emits only
-- events whose xact is below its snapshot's xmin (every such transaction has ended, and
-- every one yet to commit has a larger xact), in (xact, id) order, so a cursor in those
-- terms never skips or repeats. The constant default makes the new column a catalog
-- change only (no table rewrite, and no UPDATE for the append-only trigger to refuse);
-- rows written before it sort first, by id.
ALTER TABLE order_events ADD COLUMN xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE order_events ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
CREATE INDEX order_events_stream_idx ON order_events (xact, id);

-- Wakes the stream's readers once per statement that wrote events; PostgreSQL folds the
-- identical notifications of one transaction into one and delivers it at commit.
-- +goose StatementBegin
CREATE FUNCTION order_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_events', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_notify();

-- +goose Down
DROP TRIGGER order_events_notify ON order_events;
DROP FUNCTION order_events_notify();
DROP INDEX order_events_stream_idx;
ALTER TABLE order_events DROP COLUMN xact;
