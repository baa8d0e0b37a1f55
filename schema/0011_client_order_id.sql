-- +goose Up
-- The client's own id for an order (Alpaca's client_order_id, Binance's
-- newClientOrderId): optional, unique among one user's orders, so a client can find its
-- order by the id it chose. Nullable with no default, so adding it rewrites nothing; the
-- index covers only the orders that have one.
ALTER TABLE orders ADD COLUMN client_order_id text;
CREATE UNIQUE INDEX orders_client_order_id_idx ON orders (user_id, client_order_id) WHERE client_order_id IS NOT NULL;

-- +goose Down
DROP INDEX orders_client_order_id_idx;
ALTER TABLE orders DROP COLUMN client_order_id;
