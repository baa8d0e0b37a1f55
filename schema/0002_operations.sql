-- +goose Up
-- An order whose workflow exhausted an activity's retry budget is parked: it waits for an
-- operator's retry or fail decision. These columns show it to `orderflow orders stuck`
-- and the parked-orders metric without asking Temporal.
ALTER TABLE orders
    ADD COLUMN needs_attention boolean NOT NULL DEFAULT false,
    ADD COLUMN last_error      text    NOT NULL DEFAULT '',
    ADD COLUMN stalled_step    text    NOT NULL DEFAULT '';

CREATE INDEX orders_needs_attention_idx ON orders (updated_at) WHERE needs_attention;

-- +goose Down
DROP INDEX orders_needs_attention_idx;
ALTER TABLE orders DROP COLUMN needs_attention, DROP COLUMN last_error, DROP COLUMN stalled_step;
