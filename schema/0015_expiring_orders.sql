-- +goose Up
-- DAY and GTD orders: LIMIT orders that rest until expire_at at the latest, when a durable
-- timer in their run expires them (EXPIRED). expire_at is set exactly for them.
ALTER TABLE orders ADD COLUMN expire_at timestamptz;
ALTER TABLE orders DROP CONSTRAINT orders_time_in_force_check;
ALTER TABLE orders ADD CONSTRAINT orders_time_in_force_check CHECK (time_in_force IN ('GTC', 'IOC', 'FOK', 'DAY', 'GTD'));
ALTER TABLE orders ADD CONSTRAINT orders_expire_at_iff_expiring CHECK ((time_in_force IN ('DAY', 'GTD')) = (expire_at IS NOT NULL));
ALTER TABLE orders DROP CONSTRAINT orders_on_book_rests;
ALTER TABLE orders ADD CONSTRAINT orders_on_book_rests CHECK (NOT on_book OR (
    status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND time_in_force IN ('GTC', 'DAY', 'GTD')
    AND remaining_quantity > 0 AND book_seq IS NOT NULL AND NOT cancel_requested));

-- +goose Down
ALTER TABLE orders DROP CONSTRAINT orders_on_book_rests;
ALTER TABLE orders ADD CONSTRAINT orders_on_book_rests CHECK (NOT on_book OR (
    status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND time_in_force = 'GTC'
    AND remaining_quantity > 0 AND book_seq IS NOT NULL AND NOT cancel_requested));
ALTER TABLE orders DROP CONSTRAINT orders_expire_at_iff_expiring;
ALTER TABLE orders DROP CONSTRAINT orders_time_in_force_check;
ALTER TABLE orders ADD CONSTRAINT orders_time_in_force_check CHECK (time_in_force IN ('GTC', 'IOC', 'FOK'));
ALTER TABLE orders DROP COLUMN expire_at;
