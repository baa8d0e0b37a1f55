-- +goose Up
-- FOK joins the times in force: a LIMIT order filled entirely in its first match or not
-- at all. It never rests, so orders_on_book_rests (GTC only) needs no change.
ALTER TABLE orders DROP CONSTRAINT orders_time_in_force_check;
ALTER TABLE orders ADD CONSTRAINT orders_time_in_force_check CHECK (time_in_force IN ('GTC', 'IOC', 'FOK'));

-- +goose Down
ALTER TABLE orders DROP CONSTRAINT orders_time_in_force_check;
ALTER TABLE orders ADD CONSTRAINT orders_time_in_force_check CHECK (time_in_force IN ('GTC', 'IOC'));
