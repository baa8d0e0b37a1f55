-- +goose Up
-- A user's open orders, for a bulk cancel: few at any moment however many orders the user
-- has ended, so the partial index reads only them. The predicate is the query's
-- (ListOpenOrdersOfUser) word for word, so the planner can use it.
CREATE INDEX orders_open_by_user_idx ON orders (user_id, id)
    WHERE status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR', 'EXECUTING', 'PARTIALLY_FILLED');

-- +goose Down
DROP INDEX orders_open_by_user_idx;
