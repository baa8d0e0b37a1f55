-- +goose Up
-- The order list sorts by any of the original backend's columns (its web client sends
-- them) and every sort reads its page in index order: (column, id), id breaking ties in
-- the same direction, scanned forwards or backwards. user_id has orders_user_idx and id
-- the primary key already; (status, id) replaces (status, updated_at), which served
-- only the stuck-orders query, whose few pre-matching rows it serves as well.
CREATE INDEX orders_created_idx    ON orders (created_at, id);
-- A user's orders newest first, the original client's default list, read in index order
-- (a scan of orders_created_idx filtering one user among a thousand reads a thousand
-- times the page).
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at, id);
CREATE INDEX orders_updated_idx    ON orders (updated_at, id);
CREATE INDEX orders_instrument_idx ON orders (instrument_id, id);
CREATE INDEX orders_side_idx       ON orders (side, id);
CREATE INDEX orders_kind_idx       ON orders (kind, id);
CREATE INDEX orders_price_idx      ON orders (price, id);
CREATE INDEX orders_quantity_idx   ON orders (quantity, id);
CREATE INDEX orders_remaining_idx  ON orders (remaining_quantity, id);
DROP INDEX orders_status_idx;
CREATE INDEX orders_status_idx     ON orders (status, id);

-- The unfiltered list's totalElements without counting every order: each statement that
-- inserts (or deletes) orders adds one row with how many, and the count is their sum,
-- which the API folds into one row now and then. Rows, not one counter row, so that
-- concurrent inserts never wait for each other's commit on it.
CREATE TABLE order_counts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    n  bigint NOT NULL
);
INSERT INTO order_counts (n) SELECT count(*) FROM orders;

-- +goose StatementBegin
CREATE FUNCTION order_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_counts (n) SELECT count(*) FROM changed HAVING count(*) > 0;
    ELSE
        INSERT INTO order_counts (n) SELECT -count(*) FROM changed HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER order_counts_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION order_counts_add();
CREATE TRIGGER order_counts_delete AFTER DELETE ON orders
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION order_counts_add();

-- +goose Down
DROP TRIGGER order_counts_delete ON orders;
DROP TRIGGER order_counts_insert ON orders;
DROP FUNCTION order_counts_add();
DROP TABLE order_counts;
DROP INDEX orders_status_idx;
CREATE INDEX orders_status_idx ON orders (status, updated_at);
DROP INDEX orders_remaining_idx, orders_quantity_idx, orders_price_idx, orders_kind_idx,
    orders_side_idx, orders_instrument_idx, orders_updated_idx, orders_user_created_idx, orders_created_idx;
