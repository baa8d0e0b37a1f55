-- +goose Up
-- Admission control counts the orders accepted and not yet executed: open, off the book
-- (a resting order waits for others, not for the engine) and not parked (a parked one
-- waits for an operator). They are few at any moment, so the count reads this small
-- partial index, whatever the size of the table. The predicate is the query's
-- (queries/admission.sql) word for word, so the planner can use it.
CREATE INDEX orders_pending_idx ON orders (id)
    WHERE status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR', 'EXECUTING', 'PARTIALLY_FILLED')
      AND NOT on_book AND NOT needs_attention;

-- +goose Down
DROP INDEX orders_pending_idx;
