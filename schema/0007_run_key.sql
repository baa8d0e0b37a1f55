-- +goose Up
-- An order's workflow id is order-<id>-<run_key>: ids come back after a point-in-time
-- restore, or from a fresh database against a kept Temporal namespace, and a run left
-- over from that other history must never be taken for the new order's (nor a start of
-- the new order's run be refused as a duplicate of it). The key is 48 random bits drawn
-- when the order is placed; the activities check that the run acting on an order carries
-- its key. Orders placed before this have '' and keep their old id, order-<id>; the
-- default stays '' so that an order written by the previous release's statement (its
-- outbox message names no key) still matches its message.
ALTER TABLE orders ADD COLUMN run_key text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN run_key;
