-- +goose Up
-- Time priority is the order of arrival at the book, not the API's id: the id is given
-- before Kafka, and partitions and consumers reorder what follows. book_seq is drawn from
-- order_book_seq under the instrument's row lock when the order first reaches matching,
-- so on one instrument a later book_seq always means a later arrival.
--
-- on_book says, in one column, that the order is resting and may be traded with: set when
-- a match leaves a GTC LIMIT remainder, cleared by the fill that ends it, by a cancel
-- request (so a cancelled order never trades again, even before its run applies the
-- cancel) and by any exit. An order in EXECUTING or PARTIALLY_FILLED that is not on the
-- book is mid-match: its sweep continues in its run's next step.
--
-- Every update of an order now bumps its version, so a set-based update that checks the
-- versions it read misses any row that changed since, whatever the change was.
CREATE SEQUENCE order_book_seq AS bigint;

ALTER TABLE orders
    ADD COLUMN book_seq bigint,
    ADD COLUMN on_book  boolean NOT NULL DEFAULT false;

-- Orders that reached matching before this migration keep their id as their sequence:
-- the id was their time priority until now.
UPDATE orders o SET book_seq = o.id
WHERE EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.event_type = 'EXECUTING');
UPDATE orders SET on_book = true
WHERE status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND time_in_force = 'GTC'
  AND remaining_quantity > 0 AND NOT cancel_requested AND book_seq IS NOT NULL;
SELECT setval('order_book_seq', (SELECT coalesce(max(id), 0) + 1 FROM orders), false);

ALTER TABLE orders ADD CONSTRAINT orders_on_book_rests CHECK (NOT on_book OR (
    status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND time_in_force = 'GTC'
    AND remaining_quantity > 0 AND book_seq IS NOT NULL AND NOT cancel_requested));

-- The book, one index for both sides: priority_key is the price for sells (lowest first)
-- and the negated price for buys (highest first), so one ascending scan of
-- (priority_key, book_seq) is price-time priority on either side, and a keyset cursor is
-- one row comparison. The expression must stay identical to the one in queries/book.sql.
DROP INDEX orders_book_idx;
CREATE INDEX orders_book_idx ON orders (instrument_id, side,
    (CASE WHEN side = 'BUY' THEN -price ELSE price END), book_seq)
    WHERE on_book;

-- Fills whose resting order's run has yet to be told (an outbox for signals): written by
-- the match that made them, in its statement, and deleted once the signal is delivered.
-- Whoever delivers a notice first claims it until claimed_until (a lease, not a
-- transaction held across the signal), so a notice whose sender died is sent again once
-- the lease runs out.
CREATE TABLE fill_notices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggressor_id  bigint NOT NULL REFERENCES orders (id),
    order_id      bigint NOT NULL REFERENCES orders (id),
    status        text   NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fill_notices_aggressor_idx ON fill_notices (aggressor_id, id);

-- +goose Down
DROP TABLE fill_notices;
DROP INDEX orders_book_idx;
CREATE INDEX orders_book_idx ON orders (instrument_id, side, price, id)
    WHERE status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND remaining_quantity > 0;
ALTER TABLE orders DROP CONSTRAINT orders_on_book_rests;
ALTER TABLE orders DROP COLUMN on_book, DROP COLUMN book_seq;
DROP SEQUENCE order_book_seq;
