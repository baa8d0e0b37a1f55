-- +goose Up
-- EXPIRED joins the statuses: an order whose time ran out before it was filled (a MARKET
-- order that reached the book too long after it was accepted, reason STALE).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR',
    'EXECUTING', 'PARTIALLY_FILLED', 'EXECUTED', 'REJECTED', 'CANCELLED', 'PARTIALLY_CANCELLED', 'FAILED', 'EXPIRED'));

-- +goose Down
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR',
    'EXECUTING', 'PARTIALLY_FILLED', 'EXECUTED', 'REJECTED', 'CANCELLED', 'PARTIALLY_CANCELLED', 'FAILED'));
