-- +goose Up
-- Amending a resting order (PATCH): a smaller quantity changes the order in place and
-- keeps its time priority; a new price or a larger quantity replaces it with a new order,
-- in one transaction with the old order's cancel (reason REPLACED), so neither an
-- order's price nor its book sequence ever changes after it reached the book. The new
-- order names the one it replaces; at most one replaces each.
ALTER TABLE orders ADD COLUMN replaces_order_id bigint REFERENCES orders (id);
CREATE UNIQUE INDEX orders_replaces_idx ON orders (replaces_order_id) WHERE replaces_order_id IS NOT NULL;

-- +goose Down
DROP INDEX orders_replaces_idx;
ALTER TABLE orders DROP COLUMN replaces_order_id;
