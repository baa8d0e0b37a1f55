-- +goose Up
-- The first answer to each placement, so that a replay of its Idempotency-Key gets the
-- same status, headers and bytes. It is written in the transaction that writes the
-- order, so an order placed through the API always has its answer. A key expires at
-- expires_at, IDEMPOTENCY_KEY_TTL after its first use as the API that placed it was
-- configured (stored, so replicas configured apart agree on it): the answer is then
-- ignored and removed by the worker's job, and the order's key is released when the key
-- comes again. orders keeps UNIQUE (user_id, idempotency_key): it still decides which of two
-- requests writes, here and in a release older than this table.
CREATE TABLE idempotency_keys (
    user_id         bigint      NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    order_id        bigint      NOT NULL,
    status_code     integer     NOT NULL CHECK (status_code BETWEEN 200 AND 599),
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
